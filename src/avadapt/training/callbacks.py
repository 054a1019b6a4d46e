"""Callbacks: export the best (validation) checkpoint as an adapter directory at the end of ``fit``, and draw the
run's training curves (``curves.png``) from its own logged metrics."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from avadapt._files import replaced_atomically
from avadapt.adapter_files import save_adapter, trainable_state_dict
from avadapt.training.module import LEARNING_RATE, TRAIN_LOSS

log = logging.getLogger(__name__)


class AdapterExport(L.Callback):
    """At the end of ``fit``, write the best checkpoint's adapters as ``config.json`` + ``adapter.safetensors``.

    "Best" is what the trainer's ``ModelCheckpoint`` selected (validation accuracy in our configs); without
    one (``fast_dev_run``, checkpointing off) the final weights are exported. The module's weights are
    restored afterwards, so a ``test`` that follows still chooses its own checkpoint.

    Args:
        dirpath: where to write the adapter directory (default ``<trainer.log_dir>/adapter``).
    """

    def __init__(self, dirpath: str | None = None):
        super().__init__()
        self.dirpath = dirpath
        self.exported: Path | None = None

    def _target(self, trainer: L.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "adapter"

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        target = self._target(trainer)  # on every rank: trainer.log_dir is a collective (a broadcast) under DDP
        if not trainer.is_global_zero:
            return
        checkpoint_callback = trainer.checkpoint_callback
        best = getattr(checkpoint_callback, "best_model_path", "") if checkpoint_callback else ""
        extra: dict[str, Any] = {"global_step": trainer.global_step, "epoch": trainer.current_epoch}
        current = {k: v.clone() for k, v in trainable_state_dict(pl_module).items()}
        if best and Path(best).is_file():
            checkpoint = torch.load(best, map_location=pl_module.device, weights_only=True)
            pl_module.load_state_dict(checkpoint["state_dict"])
            score = checkpoint_callback.best_model_score
            extra = {"checkpoint": str(best), "global_step": checkpoint.get("global_step"),
                     "epoch": checkpoint.get("epoch"), "monitor": checkpoint_callback.monitor,
                     "best_score": float(score) if score is not None else None}
        self.exported = save_adapter(
            pl_module.model, target,
            class_names=pl_module.class_names or getattr(trainer.datamodule, "class_names", None),
            preprocessing=pl_module.preprocessing, backbone_source=pl_module.backbone_source, extra=extra)
        pl_module.load_state_dict(current)
        rank_zero_info(f"adapter exported to {self.exported} ({extra.get('checkpoint', 'final weights')})")


@dataclass
class Curves:
    """The series of one run's metrics file, each a list of ``(x, value)`` in the order they were logged.

    loss: ``(global step, training loss)``. monitor: ``(epoch, monitored validation metric)``.
    learning_rates: per parameter group, ``(global step, learning rate)``.
    """

    loss: list[tuple[int, float]] = field(default_factory=list)
    monitor: list[tuple[int, float]] = field(default_factory=list)
    learning_rates: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def read_curves(metrics_file: str | Path, monitor: str | None, loss: str = TRAIN_LOSS,
                learning_rate: str = LEARNING_RATE) -> Curves:
    """Read the training loss, the monitored metric and the learning rates out of a CSVLogger ``metrics.csv``.

    The file has one row per logging call with ``step`` and ``epoch`` columns; a row leaves the metrics it
    did not log empty. Learning-rate columns are ``<learning_rate>/<group>``.
    """
    curves = Curves()
    lr_prefix = f"{learning_rate}/"
    with open(metrics_file, newline="") as file:
        for row in csv.DictReader(file):
            step = int(float(row["step"])) if row.get("step") else None
            if row.get(loss) and step is not None:
                curves.loss.append((step, float(row[loss])))
            if monitor and row.get(monitor) and row.get("epoch"):
                curves.monitor.append((int(float(row["epoch"])), float(row[monitor])))
            for key, value in row.items():
                if key and key.startswith(lr_prefix) and value and step is not None:
                    curves.learning_rates.setdefault(key[len(lr_prefix):], []).append((step, float(value)))
    return curves


def draw_curves(curves: Curves, path: str | Path, monitor: str | None = None, mode: str = "max",
                title: str | None = None) -> Path:
    """A PNG of three panels: training loss per step, the monitored metric per epoch (its best marked, best by
    ``mode``) and the learning rate of each parameter group per step.

    Written atomically: drawn into a temporary file in the same folder, then renamed over ``path``, so a reader
    (or a run killed mid-write) never sees half a picture.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(14, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, monitor_axes, lr_axes = figure.subplots(1, 3)

    _plot(loss_axes, [curves.loss], [None], "training loss", "step")
    monitor_name = monitor or "monitored metric"
    _plot(monitor_axes, [curves.monitor], [None], monitor_name, "epoch", marker="o")
    if curves.monitor:
        pick = max if mode == "max" else min
        best_epoch, best = pick(curves.monitor, key=lambda point: point[1])
        monitor_axes.plot([best_epoch], [best], "*", color="crimson", markersize=14, zorder=3)
        monitor_axes.set_title(f"{monitor_name}: best {best:.4g} at epoch {best_epoch} ({mode})", fontsize=10)
        monitor_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        epochs = [epoch for epoch, _ in curves.monitor]
        monitor_axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    names = sorted(curves.learning_rates)
    _plot(lr_axes, [curves.learning_rates[n] for n in names], names, "learning rate", "step")
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    if title:
        figure.suptitle(title, fontsize=11)

    path = Path(path)
    with replaced_atomically(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path


def _plot(axes: Any, series: Sequence[list[tuple[int, float]]], labels: Sequence[str | None], name: str,
          x_label: str, marker: str | None = None) -> None:
    axes.set_title(name, fontsize=10)
    axes.set_xlabel(x_label)
    axes.grid(alpha=0.3)
    if not any(series):
        axes.text(0.5, 0.5, "not logged yet", ha="center", va="center", transform=axes.transAxes, color="grey")
        return
    for points, label in zip(series, labels, strict=True):
        xs, ys = [x for x, _ in points], [y for _, y in points]
        axes.plot(xs, ys, marker=marker or ("." if len(points) < 30 else None), linewidth=1.2, label=label)
    if any(labels):
        axes.legend(fontsize=8)


class TrainingCurves(L.Callback):
    """Draws ``curves.png`` beside the run's checkpoints: training loss per step, the monitored validation metric
    per epoch and the learning rates per step, so a run shows at a glance whether it converged.

    The values are the run's own, read back from its ``CSVLogger`` file (``metrics.csv``); the monitored metric
    and its mode are those of the trainer's ``ModelCheckpoint``. The picture is redrawn after every validation
    during ``fit`` (so a killed run keeps the picture of its finished epochs) and at the end of ``fit``. Without
    a ``CSVLogger`` nothing is drawn.

    Args:
        dirpath: folder of the picture (default: ``trainer.log_dir``, the run's folder that holds ``checkpoints/``).
        filename: name of the picture.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "curves.png"):
        super().__init__()
        self.dirpath = dirpath
        self.filename = filename
        self.written: Path | None = None
        self._warned = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_validation_end, not on_validation_epoch_end: only then has the logger written the epoch's metrics
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.draw(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer)

    def draw(self, trainer: L.Trainer) -> Path | None:
        """Redraw the picture from the metrics logged so far; returns its path (None when nothing was drawn)."""
        folder = Path(self.dirpath) if self.dirpath is not None else Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:  # trainer.log_dir above is a collective under DDP: every rank calls it
            return None
        logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if logger is None:
            if trainer.loggers and not self._warned:  # no logger at all was asked for: nothing to say
                rank_zero_warn(f"{self.filename} is drawn from a CSVLogger's metrics.csv; this run logs to "
                               f"{', '.join(type(lg).__name__ for lg in trainer.loggers)} only, so it has none")
                self._warned = True
            return None
        logger.save()
        metrics_file = Path(logger.experiment.metrics_file_path)
        if not metrics_file.is_file():
            return None
        checkpoint = trainer.checkpoint_callback
        monitor = getattr(checkpoint, "monitor", None)
        mode = getattr(checkpoint, "mode", "max")
        curves = read_curves(metrics_file, monitor)
        self.written = draw_curves(curves, folder / self.filename, monitor=monitor, mode=mode,
                                   title=f"{folder.name}: {len(curves.monitor)} validation epoch(s), "
                                         f"{trainer.global_step} training steps")
        return self.written
