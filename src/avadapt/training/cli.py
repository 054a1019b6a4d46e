"""``avadapt fit | validate | test``: LightningCLI over the typed signatures of the module and data module.

There is no second schema of flags: every option is a constructor argument of :class:`AVAdaptModule`,
:class:`AVDataModule`, ``lightning.Trainer`` or the three callbacks added here, and a YAML config is the
same tree (``avadapt fit --print_config`` shows it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_warn

from avadapt.data.datamodule import AVDataModule
from avadapt.training.callbacks import AdapterExport, TrainingCurves
from avadapt.training.checkpoints import (
    CHECKPOINTS,
    LAST,
    METRICS_ROWS,
    AtomicCheckpointIO,
    ResumeError,
    find_last_checkpoint,
    read_checkpoint,
    run_folder,
)
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision
from avadapt.training.run_log import MetricsRows, RunLogger

SUBCOMMANDS = ("fit", "validate", "test")
TASK_MONITOR = "task"  # checkpoint.monitor default: the task's own metric (val/accuracy for AVE, val/miou for AVS)
LIGHTNING_CKPT_NAMES = ("best", "hpc", "registry")  # ckpt_path values Lightning resolves itself ("last" is ours)


class AVAdaptCLI(LightningCLI):
    """LightningCLI with model selection on validation, adapter export, training curves and a final test on the
    best weights."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: spec for name, spec in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": TASK_MONITOR,
            "checkpoint.save_last": True,
            "checkpoint.auto_insert_metric_name": False,
            "trainer.precision": default_precision(),
        })
        parser.add_lightning_class_args(AdapterExport, "adapter_export")
        parser.add_lightning_class_args(TrainingCurves, "curves")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="after fit, evaluate the best validation checkpoint once on the test split")
        # the data follow the model: image transform from the backbone's data config, fbank from the model
        parser.link_arguments("model.preprocessing", "data.preprocessing", apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The default logger (``trainer.logger`` unset or true) is a ``CSVLogger`` in ``default_root_dir``, the one
        Lightning picks when TensorBoard is not installed, whether it is or not: ``curves.png`` reads its file.

        ``--ckpt_path last`` is resolved here to the ``last.ckpt`` of the latest run under ``default_root_dir`` (or
        in ``checkpoint.dirpath`` when that is set), and the checkpoint is checked before anything is trained; a
        ``fit`` that resumes from ``<run>/checkpoints/`` logs into ``<run>`` again (:mod:`avadapt.training.checkpoints`).
        Checkpoints are written atomically (:class:`~avadapt.training.checkpoints.AtomicCheckpointIO`) unless a
        ``CheckpointIO`` plugin is configured.
        """
        config = self.config_for_subcommand()
        config_init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config_init["trainer"]
        self._select_on_task_metric(config_init)
        root = trainer_config.get("default_root_dir") or os.getcwd()
        resumed = self._checkpoint_to_start_from(config_init, root)
        if resumed is not None:
            config["ckpt_path"] = config_init["ckpt_path"] = str(resumed[0])
        if "logger" not in kwargs and trainer_config.get("logger") in (None, True):
            kwargs["logger"] = self._default_logger(root, resumed)
        plugins = trainer_config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if "plugins" not in kwargs and not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(MetricsRows())
        return trainer

    def _select_on_task_metric(self, config_init: Any) -> None:
        """``checkpoint.monitor: task`` (the default) becomes the model's task metric with its mode; the file name
        (unless set) holds that metric's value."""
        checkpoint = config_init.get("checkpoint")
        if not isinstance(checkpoint, ModelCheckpoint) or checkpoint.monitor != TASK_MONITOR:
            return
        task = self.model.task
        options = self.config_for_subcommand()["checkpoint"]
        options = options.as_dict() if hasattr(options, "as_dict") else dict(options)
        options.update(monitor=self.model.monitor, mode=task.monitor_mode)
        if options.get("filename") is None:
            options["filename"] = task.checkpoint_filename()
        config_init["checkpoint"] = ModelCheckpoint(**options)

    def _checkpoint_to_start_from(self, config_init: Any, root: str) -> tuple[Path, dict[str, Any]] | None:
        """``ckpt_path`` as a checked local file and its contents; None when unset or left to Lightning."""
        ckpt_path = config_init.get("ckpt_path")
        if ckpt_path is None or "://" in str(ckpt_path) or str(ckpt_path).split(":")[0] in LIGHTNING_CKPT_NAMES:
            return None
        path = Path(ckpt_path)
        if ckpt_path == "last":
            dirpath = getattr(config_init.get("checkpoint"), "dirpath", None)
            path = find_last_checkpoint(root) if dirpath is None else Path(dirpath) / LAST
            if not path.is_file():
                raise ResumeError(f"{dirpath}: no checkpoint to resume from (no {LAST})")
        return path, read_checkpoint(path, resume=self.subcommand == "fit")

    def _default_logger(self, root: str, resumed: tuple[Path, dict[str, Any]] | None) -> CSVLogger:
        """A new run folder, or the resumed checkpoint's run folder with the rows it had logged until then."""
        if resumed is not None and self.subcommand == "fit":
            path, checkpoint = resumed
            run = run_folder(path)
            if run is not None:
                return RunLogger.continuing(run, checkpoint.get(METRICS_ROWS))
            rank_zero_warn(f"{path} lies outside a run folder (<run>/{CHECKPOINTS}/): the resumed fit logs to a new "
                           "run folder, and model selection starts over from the checkpoint's epoch")
        # absolute, so that the checkpoint callback recognises its folder from wherever the run is resumed
        return RunLogger(save_dir=os.path.abspath(root) if "://" not in str(root) else root)

    def after_fit(self) -> None:
        if not self.config_for_subcommand().get("test_after_fit", True):
            return
        fast = self.trainer.fast_dev_run
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=None if fast else "best",
                          weights_only=True)

    def config_for_subcommand(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config


def run_lightning(argv: list[str]) -> AVAdaptCLI:
    """Run ``avadapt fit|validate|test ARGS``; checkpoints are read with ``weights_only=True`` by default."""
    # From the console the arguments are sys.argv itself: let LightningCLI read them there (it warns about
    # receiving both); from Python (tests, notebooks) pass them explicitly.
    args = None if argv == sys.argv[1:] else argv
    return AVAdaptCLI(
        AVAdaptModule, AVDataModule, args=args, save_config_kwargs={"overwrite": True},
        parser_kwargs={name: {"default_env": False} for name in SUBCOMMANDS}, seed_everything_default=0,
        auto_configure_optimizers=False,
    )
