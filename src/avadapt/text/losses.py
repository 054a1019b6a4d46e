"""The text model's losses: class names matched to segments or clips, the audio–image contrastive pair, and
DG-SCT's dynamic weighting of the three (haoyi-duan/DG-SCT, ``pretrain/main_trans.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avadapt.errors import OptionError

OBJECTIVES = ("clip", "segment", "multilabel")


def matching_loss(logits: torch.Tensor, targets: torch.Tensor, objective: str) -> torch.Tensor:
    """Text-matching loss of (B, T, C) class logits.

    ``clip``: one class per clip, (B,) indices; the clip's logits are the mean over its segments (the
    reference's weak setting on its pretraining corpus). ``segment``: one class per segment, (B, T) indices (AVE
    with a "background" name among the classes). ``multilabel``: (B, C) multi-hot clip targets, binary cross
    entropy of the time-mean logits (LLP)."""
    if objective == "clip":
        return F.cross_entropy(logits.mean(1), targets)
    if objective == "segment":
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    if objective == "multilabel":
        return F.binary_cross_entropy_with_logits(logits.mean(1), targets.to(logits.dtype))
    raise OptionError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def contrastive_losses(audio_to_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross entropy of (B, B) audio-to-image logits against the diagonal, both ways (audio → image, image →
    audio): each clip's sound should pick its own pictures among the batch's and the reverse."""
    target = torch.arange(audio_to_image.shape[0], device=audio_to_image.device)
    return F.cross_entropy(audio_to_image, target), F.cross_entropy(audio_to_image.t(), target)


def dynamic_weights(losses: list[torch.Tensor], epoch: int) -> list[torch.Tensor]:
    """DG-SCT's loss weights at 1-based ``epoch``: w_i = L_i / (epoch + Σ_j L_j) + 1 / epoch.

    A larger loss weighs more, and every weight shrinks towards its 1/epoch floor as training goes on. The weights
    are functions of the losses and are not detached, as in the reference, so they take part in the gradient.
    """
    if epoch < 1:
        raise ValueError(f"epochs count from 1, got {epoch}")
    total = epoch + sum(losses)
    return [loss / total + 1.0 / epoch for loss in losses]


def weighted_total(losses: list[torch.Tensor], epoch: int) -> torch.Tensor:
    """Σ w_i · L_i with :func:`dynamic_weights`."""
    return sum(w * loss for w, loss in zip(dynamic_weights(losses, epoch), losses, strict=True))
