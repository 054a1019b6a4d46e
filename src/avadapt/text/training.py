"""Training and saving the text model: audio-visual pretraining on a corpus with class names, few-shot training
of the prompts, and adapter-only files that rebuild it (the towers come from their own weight files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors.torch import load_file, save_file

from avadapt.adapter_files import (
    check_adapter_keys,
    load_trainable_state,
    trainable_state_dict,
    trainable_state_keys,
)
from avadapt.errors import CheckpointError, OptionError
from avadapt.text.encoders import TextEncodersConfig, build_text_encoders
from avadapt.text.evaluate import segment_or_clip_scores
from avadapt.text.losses import OBJECTIVES, contrastive_losses, matching_loss, weighted_total
from avadapt.text.model import AVTextConfig, AVTextModel
from avadapt.types import AVBatch

ADAPTER_FILE = "text_adapter.safetensors"
CONFIG_FILE = "text_adapter.json"


def objective_for(labels: torch.Tensor) -> str:
    """The matching objective a dataset's ``labels`` call for: (B,) class indices → ``clip``; (B, T) indices
    per segment → ``segment``; (B, C) multi-hot → ``multilabel``."""
    if labels.is_floating_point():
        return "multilabel"
    return "clip" if labels.dim() == 1 else "segment"


class TextModule(L.LightningModule):
    """The text model as a Lightning system: text matching + the audio–image contrastive pair, weighted
    dynamically; Adam with the reference's MultiStepLR (halved at epochs 10, 20, 30).

    encoders: :class:`TextEncodersConfig` fields (which CLIP and CLAP, their weight files).
    class_names: the classes the corpus or the few-shot set labels with, in label-index order; with
        ``background`` a "background" name is appended (AVE seconds without an event score against it).
    model: :class:`AVTextConfig` fields. objective: ``clip``, ``segment`` or ``multilabel`` (None: from the first
        batch's labels). train_adapters: False trains the prompts, CLIP-Adapters and the contrastive projection
        only (few-shot). contrastive: add the audio–image contrastive losses (needs batches of ≥ 2 clips).
    """

    def __init__(self, encoders: dict[str, Any], class_names: list[str], model: dict[str, Any] | None = None,
                 objective: str | None = None, background: bool = False, train_adapters: bool = True,
                 contrastive: bool = True, lr: float = 3e-4, milestones: tuple[int, ...] = (10, 20, 30),
                 gamma: float = 0.5):
        super().__init__()
        if objective is not None and objective not in OBJECTIVES:
            raise OptionError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.save_hyperparameters()
        clip, clap = build_text_encoders(TextEncodersConfig.from_dict(encoders))
        config = AVTextConfig.from_dict(model or {})
        names = list(class_names) + ([config.templates.background] if background else [])
        self.model = AVTextModel(clip, clap, names, config)
        self.model.trainable(adapters=train_adapters)
        self.objective = objective

    def training_step(self, batch: AVBatch, batch_idx: int) -> torch.Tensor:
        out = self.model(batch.video, batch.audio)
        labels = batch.targets["labels"]
        objective = self.objective or objective_for(labels)
        losses = [matching_loss(out.logits, labels, objective)]
        if self.hparams.contrastive and len(batch) > 1:
            losses += list(contrastive_losses(out.contrastive))
        loss = weighted_total(losses, self.current_epoch + 1)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/matching", losses[0], batch_size=len(batch))
        return loss

    def validation_step(self, batch: AVBatch, batch_idx: int) -> None:
        out = self.model(batch.video, batch.audio)
        background = "prompt" if self.hparams.background else "none"
        scores = segment_or_clip_scores(out.logits.float(), batch.targets["labels"], background=background)
        self.log("val/accuracy", scores["accuracy"], prog_bar=True, batch_size=len(batch))

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(self.hparams.milestones),
                                                         gamma=self.hparams.gamma)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the trained state only: the towers are rebuilt from their weight files."""
        keep = set(trainable_state_keys(self))
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """A checkpoint of :meth:`on_save_checkpoint` (trained state only) loads strictly over those keys."""
        if strict:
            check_adapter_keys(trainable_state_keys(self), state_dict, "checkpoint")
        return super().load_state_dict(state_dict, strict=False, assign=assign)


@contextmanager
def every_adapter_trainable(model: AVTextModel) -> Iterator[None]:
    """Within the block, everything but the towers counts as trainable (what an adapter file holds, whatever this
    run trains); the parameters' own flags come back after it."""
    trained = {name: p.requires_grad for name, p in model.named_parameters()}
    model.trainable(adapters=True)
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(trained[name])


def adapter_state(model: AVTextModel) -> dict[str, torch.Tensor]:
    """Everything of the text model but its frozen towers: DG-SCT's adapters, the prompts, both CLIP-Adapters and
    the contrastive projection (whatever trained in this run)."""
    with every_adapter_trainable(model):
        return trainable_state_dict(model)


def save_text_adapter(module: TextModule, out: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``out/text_adapter.safetensors`` (the adapters) and ``out/text_adapter.json`` (what rebuilds the
    model: the encoders' config, the text model's config, the class names it was trained with)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in adapter_state(module.model).items()}
    save_file(state, str(out / ADAPTER_FILE))
    record = {"encoders": module.hparams.encoders, "model": module.model.config.to_dict(),
              "class_names": module.model.class_names, **(extra or {})}
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def read_text_adapter(folder: str | Path) -> tuple[dict[str, Any], Path]:
    """The record (``text_adapter.json``) and weights path of an adapter folder, checked to be there."""
    folder = Path(folder)
    config_file, weights = folder / CONFIG_FILE, folder / ADAPTER_FILE
    for path in (config_file, weights):
        if not path.is_file():
            raise CheckpointError(f"{path}: not found; a text adapter folder holds {CONFIG_FILE} and "
                                  f"{ADAPTER_FILE} (written by avadapt pretrain / fewshot)")
    return json.loads(config_file.read_text()), weights


def restore_adapter(model: AVTextModel, weights: str | Path) -> None:
    """Copy an adapter file into ``model``, strictly (the keys of :func:`adapter_state`, the model's shapes)."""
    with every_adapter_trainable(model):
        load_trainable_state(model, load_file(str(weights)), str(weights))


def load_text_adapter(folder: str | Path, class_names: list[str] | None = None,
                      encoders: dict[str, Any] | None = None, num_frames: int | None = None) -> AVTextModel:
    """The text model of an adapter folder, scoring ``class_names`` (default: those it was trained with).

    encoders: fields replacing the recorded encoders' (other weight paths on this machine). num_frames: segments
    per clip of the data it will see (no trained weight depends on it)."""
    record, weights = read_text_adapter(folder)
    clip, clap = build_text_encoders(TextEncodersConfig.from_dict({**record["encoders"], **(encoders or {})}))
    fields = {**record["model"], **({"num_frames": num_frames} if num_frames is not None else {})}
    model = AVTextModel(clip, clap, record["class_names"], AVTextConfig.from_dict(fields))
    restore_adapter(model, weights)
    model.requires_grad_(False)
    if class_names is not None:
        model.set_classes(class_names)
    return model.eval()
