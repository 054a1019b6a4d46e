"""What every task's demo shares: a banner per step, and one fit + test of a training module on a data module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from safetensors.torch import save_file

from avadapt.data.datamodule import AVDataModule
from avadapt.models import parameter_report
from avadapt.training.callbacks import AdapterExport, TrainingCurves
from avadapt.training.module import AVAdaptModule
from avadapt.training.resume import AtomicCheckpointIO


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run with ``count`` intra-op threads: a demo's tensors are tiny, and synchronising more threads costs more
    than it saves (and explodes on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def introduce(command: str, out: Path, backbone: str, real_weights_hint: str) -> None:
    """What the demo writes where, and that its backbone is random (so its numbers only show that it learns)."""
    print(f"{command} → {out.resolve()}\n"
          f"NOTE: the backbone is a tiny RANDOMLY INITIALISED ViT (timm '{backbone}'): no pretrained weights can "
          "be downloaded here, so the numbers below only show that the pipeline learns.\n" + real_weights_hint,
          flush=True)


def save_backbone(module: AVAdaptModule, out: Path) -> Path:
    """Write the module's (random) frozen backbone to ``out/random_backbone.safetensors``: every run of a demo
    trains on it, and prediction reloads it through the adapter directory's record."""
    path = out / "random_backbone.safetensors"
    save_file({k: v.contiguous() for k, v in module.model.backbone.model.state_dict().items()}, str(path))
    return path


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
