"""Audio-visual event localisation (AVE): one of 28 events or background for every 1 s segment."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from avadapt._config import JSONConfig, positive_int
from avadapt.errors import OptionError
from avadapt.tasks.ave.predict import AVEPrediction
from avadapt.tasks.base import TaskHead, register_task
from avadapt.types import AVFeatures, FeatureSpec

LOSSES = ("cross_entropy", "bce_on_softmax")


@dataclass
class AVEConfig(JSONConfig):
    """The AVE head: ``classifier`` (default; STG-CMA's, concat[audio; video] → Linear 512 → Dropout 0.5 → Linear 29
    per segment) or ``cmbs`` (DG-SCT's, :class:`~avadapt.tasks.ave.cmbs.CMBSHead`, with its own four-term loss).

    num_classes counts the background class (28 events + 1 for AVE), which is the last class.
    hidden_dim, dropout, loss: the classifier's; loss ``cross_entropy`` (STG-CMA's) or ``bce_on_softmax``
        (LAVISH's: binary cross-entropy between the softmax output and the one-hot targets, averaged over
        segments and classes).
    video_projection_dim, audio_projection_dim, temporal_dim: the CMBS temporal module's input projections and
        width d (DG-SCT: 512 and 128 from Swin-V2-L's 1536 and HTS-AT's 768; 256).
    gate_scale: γ of the temporal module's cross-modal gates, v·(1 + γ·g_a) (0.1 for AVE in DG-SCT; 0: no gating).
    top_k, av_score_weight: CMBS's video-level av_score, the mean class activation of the top_k segments (4),
        is added to the class logits with this weight (0.3).
    """

    num_classes: int = 29
    head: str = "classifier"
    hidden_dim: int = 512
    dropout: float = 0.5
    loss: str = "cross_entropy"
    video_projection_dim: int = 512
    audio_projection_dim: int = 128
    temporal_dim: int = 256
    gate_scale: float = 0.1
    top_k: int = 4
    av_score_weight: float = 0.3

    def __post_init__(self):
        def finite(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        rules = [("head", lambda v: v in AVE_HEADS, f"one of {tuple(AVE_HEADS)}"),
                 ("loss", lambda v: v in LOSSES, f"one of {LOSSES}"),
                 ("num_classes", lambda v: positive_int(v) and v >= 2, "at least 2: one event class plus background"),
                 ("video_projection_dim", positive_int, "a positive integer"),
                 ("audio_projection_dim", positive_int, "a positive integer"),
                 ("temporal_dim", lambda v: positive_int(v) and v % 4 == 0,
                  "a positive multiple of 4 (the temporal module's attention heads)"),
                 ("top_k", positive_int, "a positive integer"),
                 ("gate_scale", finite, "a finite number"),
                 ("av_score_weight", finite, "a finite number")]
        for name, valid, rule in rules:
            if not valid(getattr(self, name)):
                raise OptionError(f"AVE {name} must be {rule}, got {getattr(self, name)!r}")


class AVEHead(TaskHead):
    """Per-segment classifier over the concatenated features of the active modalities: the config's two-layer MLP,
    or with one modality the reference's single-branch LayerNorm + Linear. Linear layers start as the
    reference's: truncated normal weights (std 0.02), zero biases."""

    config_class = AVEConfig

    def __init__(self, spec: FeatureSpec, config: AVEConfig):
        super().__init__(spec, config)
        self.modalities = tuple(m for m in ("audio", "video") if m in spec.modalities)  # concat order: audio, video
        feature_dim = sum(spec.width(m) for m in self.modalities)  # D_a + D_v (both D on a shared backbone)
        if len(self.modalities) == 1:
            self.classifier = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, config.num_classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(feature_dim, config.hidden_dim),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden_dim, config.num_classes),
            )
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, features: AVFeatures, **inputs: torch.Tensor) -> torch.Tensor:
        """→ (B, T, num_classes) logits."""
        x = torch.cat([getattr(features, m) for m in self.modalities], dim=-1)  # (B, T, D * n_modalities)
        return self.classifier(x)

    def loss(self, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """The config's loss over all segments."""
        logits, labels = logits.flatten(0, 1).float(), targets["labels"].flatten()
        if self.config.loss == "bce_on_softmax":
            one_hot = F.one_hot(labels, self.config.num_classes).to(logits.dtype)
            return F.binary_cross_entropy(logits.softmax(-1), one_hot)
        return F.cross_entropy(logits, labels)

    def metrics(self) -> MetricCollection:
        return segment_accuracy(self.config.num_classes)

    def update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        """(B, T, C) logits and (B, T) labels, scored per segment."""
        metrics.update(logits.flatten(0, 1).float(), targets["labels"].flatten())

    def predict(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(…, C) logits → (…,) class index and its softmax probability."""
        scores, labels = logits.float().softmax(-1).max(-1)
        return labels, scores


def segment_accuracy(num_classes: int) -> MetricCollection:
    """Segment accuracy over all segments of a split (ECCV'18 ``compute_acc``): ``accuracy`` = (1 / (T·N)) Σ_i Σ_t
    1[argmax_c p_itc = y_it]; ``class_accuracy``: each class's recall over its segments (0 for a class absent)."""
    return MetricCollection({
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "class_accuracy": MulticlassAccuracy(num_classes, average=None),
    })


AVE_HEADS: dict[str, type[TaskHead]] = {"classifier": AVEHead}
"""The AVE heads by ``AVEConfig.head``; ``avadapt.tasks.ave.cmbs`` adds ``cmbs``."""


@register_task
class AVETask(AVEPrediction):
    """Event localisation: one of the dataset's events or background for every 1 s segment, selected on segment
    accuracy, by the head ``AVEConfig.head`` names."""

    name = "ave"
    head_class = AVEHead
    monitor = "accuracy"
    dataset = "ave"
    num_segments = 10
    # the Swin loaders of STG-CMA (its probe too) and LAVISH for this dataset; on a ViT the family's default
    paper_audio_front_ends: ClassVar[dict[tuple[str, str], str]] = {
        ("stg_cma", "swin"): "stg_cma_swin_ave", ("probe", "swin"): "stg_cma_swin_ave",
        ("lavish", "swin"): "lavish_swin_ave"}

    def build_head(self, spec: FeatureSpec, config: AVEConfig) -> TaskHead:
        """The head ``config.head`` names (:data:`AVE_HEADS`)."""
        return AVE_HEADS[config.head](spec, config)
