"""What every task's demo shares: a banner per step, and one fit + test of a training module on a data module."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from avadapt.data.datamodule import AVDataModule
from avadapt.models import parameter_report
from avadapt.training.callbacks import AdapterExport, TrainingCurves
from avadapt.training.module import AVAdaptModule
from avadapt.training.resume import AtomicCheckpointIO


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def fit_and_test(module: AVAdaptModule, datamodule: AVDataModule, out: Path, epochs: int, precision: str,
                 test: bool = True, name: str | None = None) -> dict[str, Any]:
    """Fit on the CPU selecting on the task's validation metric; test the best checkpoint once (``test=False``:
    validation only, for choosing settings); ``name`` labels the run in what is printed (default: the method).
    Writes ``out/{checkpoints,adapter,logs}`` and ``out/curves.png``.

    Returns ``best_val_<monitor>``, ``test_<metric>`` for every logged test metric (``/`` read as ``_``), ``train_seconds``, parameter
    counts and the adapter and curves paths.
    """
    task = module.task
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor=module.monitor, mode=task.monitor_mode,
                                 save_last=True, filename=task.checkpoint_filename(), auto_insert_metric_name=False)
    export = AdapterExport(str(out / "adapter"))
    curves = TrainingCurves(str(out))  # beside checkpoints/, from logs/metrics.csv
    trainer = L.Trainer(
        accelerator="cpu", devices=1, precision=precision, max_epochs=epochs,
        callbacks=[checkpoint, export, curves], plugins=[AtomicCheckpointIO()],
        logger=CSVLogger(out, name="logs", version=""), default_root_dir=out, log_every_n_steps=5,
        enable_model_summary=False, num_sanity_val_steps=0,
    )
    report = parameter_report(module.model)
    print(f"{name or module.hparams.method}: {report['trainable']:,} trainable of {report['total']:,} parameters "
          f"({report['trainable_percent']:.1f}%), precision {precision}", flush=True)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    train_seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        f"best_val_{task.monitor}": round(float(checkpoint.best_model_score), 4),
        "train_seconds": round(train_seconds, 1),
        "trainable_parameters": report["trainable"],
        "total_parameters": report["total"],
        "adapter": str(export.exported),
        "curves": str(curves.written),
    }
    if test:
        tested = trainer.test(module, datamodule=datamodule, ckpt_path="best", weights_only=True, verbose=False)[0]
        for key, value in tested.items():  # test/accuracy → test_accuracy, test/type/x → test_type_x
            if key.startswith("test/"):
                result[key.replace("/", "_")] = round(float(value), 4)
    return result
