"""``avadapt fit | validate | test``: LightningCLI over the typed signatures of the module and data module.

There is no second schema of flags: every option is a constructor argument of :class:`AVAdaptModule`,
:class:`AVEDataModule`, ``lightning.Trainer`` or the three callbacks added here, and a YAML config is the
same tree (``avadapt fit --print_config`` shows it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from avadapt.data.datamodule import AVEDataModule
from avadapt.training.callbacks import AdapterExport, TrainingCurves
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision

SUBCOMMANDS = ("fit", "validate", "test")
MONITOR = "val/accuracy"


class AVAdaptCLI(LightningCLI):
    """LightningCLI with model selection on validation, adapter export, training curves and a final test on the
    best weights."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: spec for name, spec in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": MONITOR,
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.filename": "epoch{epoch:02d}-val_acc{val/accuracy:.4f}",
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
        Lightning picks when TensorBoard is not installed, whether it is or not: ``curves.png`` reads its file."""
        trainer = self.config_init[self.subcommand]["trainer"] if self.subcommand else self.config_init["trainer"]
        if "logger" not in kwargs and trainer.get("logger") in (None, True):
            kwargs["logger"] = CSVLogger(save_dir=trainer.get("default_root_dir") or os.getcwd())
        return super().instantiate_trainer(**kwargs)

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
        AVAdaptModule, AVEDataModule, args=args, save_config_kwargs={"overwrite": True},
        parser_kwargs={name: {"default_env": False} for name in SUBCOMMANDS}, seed_everything_default=0,
        auto_configure_optimizers=False,
    )
