"""The task contract: what a task declares (:class:`TaskHead`, :class:`Task`), and what the model, the training
system, prediction and the CLI read from it instead of knowing any task by name. A task's datasets
(``avadapt.data``, which knows nothing of the model stack) make its targets and inputs: every tensor of an item
besides ``video``, ``audio`` and ``meta`` is stacked into ``AVBatch.targets``, the entries under ``inputs`` into
``AVBatch.inputs``. Adding a task is one package and its config files; nothing else names it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MetricCollection

from avadapt._registry import TASKS
from avadapt.errors import OptionError
from avadapt.types import AVFeatures, FeatureSpec

MONITOR_MODES = ("max", "min")


class TaskHead(nn.Module):
    """The model side of a task: features of the adapted backbone (+ the task's inputs) → outputs.
    ``config_class``: the task's config dataclass (``JSONConfig``); its fields are the ``task_options``."""

    config_class: ClassVar[type]

    def __init__(self, spec: FeatureSpec, config: Any):
        super().__init__()
        self.spec = spec
        self.config = config

    def forward(self, features: AVFeatures, **inputs: torch.Tensor) -> Any:
        raise NotImplementedError

    def loss(self, outputs: Any, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of one batch (a scalar)."""
        raise NotImplementedError

    def metrics(self) -> MetricCollection:
        """Fresh metrics for one split, cloned per stage (``val/``, ``test/``); a vector result is logged one
        entry per class."""
        raise NotImplementedError

    def update_metrics(self, metrics: MetricCollection, outputs: Any, targets: dict[str, torch.Tensor]) -> None:
        """Feed one batch's outputs and targets to ``metrics`` (as returned by :meth:`metrics`)."""
        raise NotImplementedError

    def load_pretrained(self, path: str | Path) -> list[str]:
        """Start the head from a pretraining checkpoint of the references' (AVQA: grounding pretraining); returns
        what was loaded. Heads without such a checkpoint say so."""
        raise OptionError(f"{type(self).__name__} has no pretraining checkpoint to start from")

    def data_options(self) -> dict[str, Any]:
        """Options the task's dataset must be built with so that its items fit this head (AVQA: the question
        vocabulary); recorded in the model's preprocessing, which the data module and prediction read."""
        return {}


class Task:
    """One task's declarations, registered with :func:`register_task` (one instance in ``TASKS``)."""

    name: ClassVar[str]
    head_class: ClassVar[type[TaskHead]]  # its ``config_class`` is the task's config
    monitor: ClassVar[str]  # the metric that selects checkpoints, logged as ``val/<monitor>``
    monitor_mode: ClassVar[str] = "max"  # or "min"
    inputs: ClassVar[tuple[str, ...]] = ()  # ``AVBatch.inputs`` entries the head takes as keyword arguments
    # the input that numbers each item's clip where several items share one (AVQA: ``video_index``, a video's
    # questions), so that the model runs each clip through the backbone once; None: one clip per item
    clip_input: ClassVar[str | None] = None
    dataset: ClassVar[str]  # the dataset (``avadapt._registry.DATASETS``) read unless told otherwise
    num_segments: ClassVar[int]  # per clip of that dataset (AVE 10, AVS 5); a method's ``num_frames`` default
    prediction_kind: ClassVar[str] = ""  # what ``avadapt predict`` writes, for its help text
    # task options ``avadapt params`` builds with when none are given, where the head's size depends on the data
    # (AVQA: a question vocabulary of the reference's size)
    counting_options: ClassVar[dict[str, Any]] = {}
    # (method, backbone family) → the audio front end the method's paper used for this task's dataset on that
    # family, which a model takes unless given one (a pair not listed: the method's own ``paper_audio_front_end``,
    # else the family's ``FAMILY_AUDIO_FRONT_ENDS``)
    paper_audio_front_ends: ClassVar[dict[tuple[str, str], str]] = {}

    @property
    def config_class(self) -> type:
        return self.head_class.config_class

    def build_head(self, spec: FeatureSpec, config: Any) -> TaskHead:
        return self.head_class(spec, config)

    def checkpoint_filename(self) -> str:
        """ModelCheckpoint file name pattern holding the epoch and the monitored value."""
        slug = self.monitor.replace("/", "_")
        return f"epoch{{epoch:02d}}-val_{slug}{{val/{self.monitor}:.4f}}"

    # ---- prediction on a whole video (a task package's predict.py: a subclass its task extends) ----
    segment_seconds: ClassVar[float | None] = 1
    """Seconds per segment when predicting on a file, which is then read as windows of T such segments; None:
    the whole file is one window of T equal parts (a task about whole clips, such as question answering)."""

    prediction_draws_frames: ClassVar[bool] = True
    """Whether :meth:`prediction_result` uses the frame of every segment; False (a result drawn from the
    probabilities alone) lets prediction on a long video keep no frames, so its memory does not grow with length."""

    def prediction_inputs(self, head: TaskHead, question: str | None = None
                          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The head's inputs beside video and audio for a prediction on one video (a batch of one), made from the
        user's ``question``, and what the result reports about them."""
        if question is not None:
            raise OptionError(f"a {self.name!r} adapter takes no question; it predicts {self.prediction_kind}")
        return {}, {}

    def segment_probabilities(self, outputs: Any) -> Any:
        """(W, T, …) per-segment probabilities from the outputs of W windows: what prediction averages where two
        windows overlap. A task with ``segment_seconds`` None sees one window and keeps what its result needs."""
        raise NotImplementedError

    # the entries of the video's ``info`` (:func:`avadapt.prediction.predict_video`) that open the task's result
    prediction_facts: ClassVar[tuple[str, ...]] = ("video", "duration", "seconds", "window_seconds", "window_starts")

    def prediction_result(self, probabilities: Any, frames: torch.Tensor | None, info: dict[str, Any],
                          ground_truth: str | None = None, top: int = 3) -> tuple[dict[str, Any], Callable]:
        """The task's fields of the result on one video: ``summary`` (one console line) and, with ``ground_truth``
        (the task's ``--labels``), an ``agreement`` line; and ``write_files(out, result)``, which writes ``OUT.png``
        and the task's other files (``out``: the path without suffix), adding their paths to ``result``.
        probabilities: (S, …) per segment of the video (a whole-clip task: what :meth:`segment_probabilities`
        kept); frames: (S, H, W, 3) uint8 at the model's input size (None where ``prediction_draws_frames`` is
        False)."""
        raise NotImplementedError


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: register one instance of ``cls`` in ``TASKS`` under ``cls.name``; declarations that cannot
    work fail here."""
    if cls.monitor_mode not in MONITOR_MODES:
        raise ValueError(f"task {cls.name!r}: monitor_mode must be one of {MONITOR_MODES}, got {cls.monitor_mode!r}")
    if not issubclass(cls.head_class, TaskHead):
        raise TypeError(f"task {cls.name!r}: head_class must subclass TaskHead")
    TASKS.register(cls.name)(cls())
    return cls


def get_task(name: str) -> Task:
    """The registered task called ``name`` (an :class:`~avadapt.errors.OptionError` lists the known ones)."""
    return TASKS.get(name)
