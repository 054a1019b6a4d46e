"""What a task's demo declares (``avadapt demo --task NAME``), registered with :func:`register_demo`; a variant
for a method whose encoders differ (``--method``) is listed in the spec's ``variants``. ``avadapt.demo`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from avadapt._registry import Registry, load_task_plugins

DEMOS: Registry = Registry("demo", discover=load_task_plugins)
RANDOM = "random initialisation: no pretrained weights available here"
Predictor = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class DemoRun:
    """One model the demo trains and tests."""

    name: str  # its folder under ``runs/`` and its key in ``curves``
    label: str  # how the console names it
    prefix: str = ""  # of its ``metrics.json`` fields (``""``: the main run)
    method: str | None = None  # default: ``name``
    method_options: dict[str, Any] = field(default_factory=dict)
    banner: str | None = None  # a step announced before it
    epochs: int | None = None  # instead of the spec's

    @property
    def method_name(self) -> str:
        return self.method or self.name


@dataclass
class DemoSpec:
    """A demo's sizes and settings (its ``config`` in ``metrics.json``). A task's spec adds its own and declares
    ``synthesize(root)`` (the data in the task's native layout, reused where ``data_marker`` exists and decoded by
    the ``prepare`` of the task's dataset; returns what to print), ``runs()`` (the models compared, the main one
    first), ``model_options(method, method_options, root)`` (a run's ``AVAdaptModule`` arguments besides its
    method, frozen weights and :meth:`training` rates), ``metrics`` (logged test metric → console name, the
    headline first) and ``predict(root, out, predict, ask)``: predict one test clip with the main run's adapter
    (``predict(video, out, ground_truth=None)`` or ``ask(video, question, out=)``), print how it compares with its
    annotation and return the ``prediction`` entry of ``metrics.json`` (with its ``png``).
    """

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
    random_note: ClassVar[str] = ""  # what else is randomly initialised (formatted with the fields)
    data_marker: ClassVar[str]
    data_banner: ClassVar[str]  # formatted with the fields
    prepare_banner: ClassVar[str] = "decoding every clip once (frames + fbank cache)"
    predict_banner: ClassVar[str] = "predicting one test clip from the exported adapter"
    metrics: ClassVar[dict[str, str]]
    metric_description: ClassVar[str]
    same_initial_head: ClassVar[bool] = False  # every run starts from the probe's head (seeded the same way)
    # calibrate(model, train_batches): fit the random frozen encoders' statistics to the data before they are saved
    calibrate: ClassVar[Callable[[Any, Any], None] | None] = None

    def training(self, method: str) -> dict[str, Any]:
        """The probe trains its head at ``probe_lr``; other methods their modules at ``lr`` and their head at
        ``head_lr_factor`` times it (each spec's field or property), decaying to ``min_lr`` at most."""
        lr = self.probe_lr if method == "probe" else self.lr
        return {"lr": lr, "min_lr": min(self.min_lr, lr), "warmup_epochs": self.warmup_epochs,
                "head_lr_factor": 1.0 if method == "probe" else self.head_lr_factor}

    def data_options(self) -> dict[str, Any]:
        """Extra arguments of the data module."""
        return {}

    def summaries(self, result: dict[str, Any]) -> dict[str, Any]:
        """Extra ``metrics.json`` fields of one run, from its ``test_*`` figures."""
        return {}

    def extra_metrics(self) -> dict[str, Any]:
        """Extra ``metrics.json`` fields of the demo."""
        return {}

    def verdict(self, figures: dict[str, Any]) -> str | None:
        """A line saying how the main run compares with the others, from ``metrics.json``'s figures; printed at
        the end and kept as its ``verdict`` (None: no line)."""
        return None


def register_demo(spec: type[DemoSpec]) -> type[DemoSpec]:
    """Class decorator: ``spec`` is the demo of its task (``avadapt demo --task TASK``)."""
    DEMOS.register(spec.task)(spec)
    return spec
