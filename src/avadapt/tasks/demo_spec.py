"""What a task's demo declares (``avadapt demo --task NAME``); ``avadapt.demo`` runs it.

A spec is a dataclass of the demo's sizes and settings (its ``config`` in ``metrics.json``) whose class declares
how to synthesise and prepare the task's data, which models to compare, what to report and how to predict one
test clip. A task registers its spec with :func:`register_demo`; a variant for one method (a method whose
encoders differ from the task demo's) is listed in the spec's ``variants`` and run with ``--method``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from avadapt._registry import Registry, load_task_plugins

DEMOS: Registry = Registry("demo", discover=load_task_plugins)
RANDOM = "random initialisation: no pretrained weights available here"


@dataclass(frozen=True)
class DemoRun:
    """One model the demo trains and tests.

    name: its folder under ``runs/`` and its key in ``curves``. label: how the console names it. prefix: of its
    ``metrics.json`` fields (``""`` for the main run, which comes first). banner: a step announced before it.
    """

    name: str
    label: str
    prefix: str = ""
    method: str | None = None  # default: ``name``
    method_options: dict[str, Any] = field(default_factory=dict)
    banner: str | None = None

    @property
    def method_name(self) -> str:
        return self.method or self.name


@dataclass
class DemoSpec:
    """Settings every demo has; a task's spec adds its own fields and fills in the declarations below."""

    seed: int = 0
    video_size: int = 64  # pixels of the synthetic frames
    image_size: int = 64  # model input
    backbone: str = "test_vit"
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    probe_lr: float = 1e-3
    # A demo's tensors are tiny: one intra-op thread avoids synchronisation that costs more than it saves.
    threads: int = 1

    task: ClassVar[str]
    method: ClassVar[str | None] = None  # the ``--method`` of a variant
    variants: ClassVar[dict[str, type[DemoSpec]]] = {}
    real_weights_hint: ClassVar[str]  # how to train on the real dataset with real weights
    random_note: ClassVar[str] = ""  # what else is randomly initialised, beside the backbone
    data_marker: ClassVar[str]  # a file of the synthesised data; when there, the data is reused
    prepare_banner: ClassVar[str]
    predict_banner: ClassVar[str] = "predicting one test clip from the exported adapter"
    metrics: ClassVar[dict[str, str]]  # test metrics reported (logged name → console name), the headline first
    metric_description: ClassVar[str]
    same_initial_head: ClassVar[bool] = False  # every run starts from the probe's head (seeded the same way)

    def data_banner(self) -> str:
        raise NotImplementedError

    def synthesize(self, root: Path) -> Any:
        """Write the synthetic dataset under ``root``; returns what to print about it."""
        raise NotImplementedError

    def prepare(self, root: Path, cache: Path, **video: Any) -> None:
        """Decode ``root`` into ``cache`` (``video``: ``workers``, ``image_size``, ``fbank``, ``crop_pct``,
        ``interpolation``)."""
        raise NotImplementedError

    def runs(self) -> list[DemoRun]:
        raise NotImplementedError

    def model_options(self, method: str, method_options: dict[str, Any], root: Path) -> dict[str, Any]:
        """``AVAdaptModule`` arguments of one model besides its method, weights and training rates."""
        raise NotImplementedError

    def training(self, method: str) -> dict[str, Any]:
        """The training rates of one method: the probe trains its head at ``probe_lr``, other methods their
        adapters at ``lr`` and their head at ``head_lr_factor`` times it (a field of the specs that keep this)."""
        probe = method == "probe"
        return {"lr": self.probe_lr if probe else self.lr, "min_lr": self.min_lr, "warmup_epochs": self.warmup_epochs,
                "head_lr_factor": 1.0 if probe else self.head_lr_factor}

    def epochs_of(self, method: str) -> int:
        return self.epochs

    def data_options(self) -> dict[str, Any]:
        """Extra arguments of the data module."""
        return {}

    calibrate: ClassVar[Callable[[Any, Any], None] | None] = None
    """``calibrate(model, train_batches)``: fit the random frozen encoders' statistics to the data before they
    are saved (None: nothing to fit)."""

    def summaries(self, result: dict[str, Any]) -> dict[str, Any]:
        """Extra ``metrics.json`` fields of one run, from its ``test_*`` figures."""
        return {}

    def extra_metrics(self) -> dict[str, Any]:
        return {}

    def predict(self, root: Path, out: Path, predict: Callable[..., dict[str, Any]],
                ask: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        """Predict one test clip with the main run's adapter and print how it compares with the annotation;
        returns the ``prediction`` entry of ``metrics.json`` (with its ``png``). ``predict(video, out,
        ground_truth=None)`` and ``ask(video, question, out)`` run the exported adapter."""
        raise NotImplementedError


def register_demo(spec: type[DemoSpec]) -> type[DemoSpec]:
    """Class decorator: ``spec`` is the demo of its task (``avadapt demo --task TASK``)."""
    DEMOS.register(spec.task)(spec)
    return spec
