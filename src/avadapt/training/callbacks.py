"""Callbacks: export the best (validation) checkpoint as an adapter directory at the end of ``fit``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from avadapt.io import save_adapter, trainable_state_dict

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
