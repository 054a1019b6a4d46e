"""Audio-visual event localisation (AVE): one of 28 events or background for every 1 s segment."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from avadapt._config import JSONConfig
from avadapt.errors import OptionError
from avadapt.tasks.ave import predict
from avadapt.tasks.base import Task, TaskHead, register_task
from avadapt.types import AVFeatures, FeatureSpec

LOSSES = ("cross_entropy", "bce_on_softmax")


@dataclass
class AVEConfig(JSONConfig):
    """The AVE head: ``classifier`` (default) or ``cmbs``.

    ``classifier``: STG-CMA's AVE head, concat[audio; video] → Linear 512 → Dropout 0.5 → Linear 29, per segment.
    ``cmbs``: DG-SCT's AVE head (:class:`~avadapt.tasks.ave.cmbs.CMBSHead`): a CMRAN-style temporal module
    over the per-segment vectors, then CMBS's event-relevance and video-level class scores.

    num_classes counts the background class (28 events + 1 for AVE); background is the last class.
    hidden_dim, dropout, loss: the classifier's. loss: ``cross_entropy`` (STG-CMA's, with one-hot targets) or
        ``bce_on_softmax`` (LAVISH's: binary cross-entropy between the softmax output and the one-hot targets,
        averaged over segments and classes). The CMBS head has its own four-term loss.
    video_projection_dim, audio_projection_dim: the CMBS temporal module's input projections (512 and 128 in
        DG-SCT, from Swin-V2-L's 1536 and HTS-AT's 768).
    temporal_dim: the temporal module's and CMBS head's width d (256).
    gate_scale: γ of the temporal module's cross-modal gates, v·(1 + γ·g_a) (0.1 for AVE in DG-SCT; 0: no gating).
    top_k: segments whose class activations are averaged into the video-level av_score (4 in CMBS).
    av_score_weight: weight of av_score added to the video-level class logits (0.3 in CMBS).
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
        if self.head not in AVE_HEADS:
            raise OptionError(f"AVE head must be one of {tuple(AVE_HEADS)}, got {self.head!r}")
        if self.loss not in LOSSES:
            raise OptionError(f"AVE loss must be one of {LOSSES}, got {self.loss!r}")
        if self.num_classes < 2:
            raise ValueError(f"AVE needs at least one event class plus background, got {self.num_classes}")
        for name in ("video_projection_dim", "audio_projection_dim", "temporal_dim", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"{name} must be a positive integer, got {value!r}")
        if self.temporal_dim % 4:
            raise OptionError(f"temporal_dim must be a multiple of 4 (the temporal module's attention heads), "
                              f"got {self.temporal_dim}")
        for name in ("gate_scale", "av_score_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OptionError(f"{name} must be a finite number, got {value!r}")


class AVEHead(TaskHead):
    """Per-segment classifier over the concatenated per-segment features of the active modalities.

    Both modalities: the config's two-layer MLP. One modality (audio-only or visual-only): LayerNorm + Linear,
    the reference's single-branch head. Linear layers start as the reference's: truncated normal weights
    (std 0.02), zero biases.
    """

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
    """Segment accuracy over all segments of a split (ECCV'18 ``compute_acc``), and per class.

    ``accuracy``: micro average = (1 / (T·N)) Σ_i Σ_t 1[argmax_c p_itc = y_it]. ``class_accuracy``:
    recall of each class over its segments (a vector of ``num_classes``; 0 for a class absent from the split).
    """
    return MetricCollection({
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "class_accuracy": MulticlassAccuracy(num_classes, average=None),
    })


AVE_HEADS: dict[str, type[TaskHead]] = {"classifier": AVEHead}
"""The AVE heads by ``AVEConfig.head``; ``avadapt.tasks.ave.cmbs`` adds ``cmbs``."""


@register_task
class AVETask(Task):
    """Event localisation: one of the dataset's events or background for every 1 s segment; selected on
    segment accuracy. The head is ``AVEConfig.head``'s: the per-segment classifier or DG-SCT's CMBS head.
    ``avadapt predict`` writes per-second labels and a timeline picture."""

    name = "ave"
    head_class = AVEHead
    monitor = "accuracy"
    dataset = "ave"
    num_segments = 10
    # the Swin loaders of STG-CMA (its probe too) and LAVISH for this dataset; on a ViT the family's default
    paper_audio_front_ends: ClassVar[dict[tuple[str, str], str]] = {
        ("stg_cma", "swin"): "stg_cma_swin_ave", ("probe", "swin"): "stg_cma_swin_ave",
        ("lavish", "swin"): "lavish_swin_ave"}
    prediction_kind = "per-second event labels (JSON) and a timeline picture (PNG)"

    def build_head(self, spec: FeatureSpec, config: AVEConfig) -> TaskHead:
        """The head ``config.head`` names (:data:`AVE_HEADS`)."""
        return AVE_HEADS[config.head](spec, config)

    segment_probabilities = staticmethod(predict.segment_probabilities)
    write_prediction = staticmethod(predict.write_prediction)
