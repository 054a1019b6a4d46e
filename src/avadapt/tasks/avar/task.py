"""Audio-visual action recognition: one label per clip (Kinetics-Sounds, VGGSound), from the per-segment audio and
visual features of any method."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from avadapt._config import JSONConfig, positive_int
from avadapt.errors import OptionError
from avadapt.tasks.avar.metrics import PresentClassesMAP
from avadapt.tasks.avar.predict import TOP_K, AVARPrediction
from avadapt.tasks.base import TaskHead, register_task
from avadapt.types import AVFeatures, FeatureSpec

KINETICS_SOUNDS_CLASSES = 31  # the classes of OGM-GE's Kinetics-Sounds lists, the common 31-class split


@dataclass
class AVARConfig(JSONConfig):
    """The recognition head: the time-mean of each active stream's per-segment features, concatenated
    [audio; video], then a classifier.

    num_classes: the classes of the dataset's class list (31 for Kinetics-Sounds' common split, 309 for VGGSound).
    hidden_dim: the classifier is Linear(D_a + D_v → hidden_dim) → Dropout → Linear(hidden_dim → num_classes), the
        shape of the event-localisation head (512), with no non-linearity between, so it stays a linear map of
        the pooled features (of rank ≤ hidden_dim); 0: one Linear(D_a + D_v → num_classes).
    dropout: between the two Linears (0.5, as the event-localisation head); unused with hidden_dim 0.
    multi_label: several labels per clip: binary cross-entropy per class and mAP, the lists' ``a;b`` labels read
        as a multi-hot target; otherwise one label per clip and cross-entropy.
    """

    num_classes: int = KINETICS_SOUNDS_CLASSES
    hidden_dim: int = 512
    dropout: float = 0.5
    multi_label: bool = False

    def __post_init__(self):
        dropout_ok = (isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
                      and math.isfinite(self.dropout) and 0 <= self.dropout < 1)
        rules = [("num_classes", positive_int(self.num_classes) and self.num_classes >= 2, "an integer ≥ 2"),
                 ("hidden_dim", isinstance(self.hidden_dim, int) and not isinstance(self.hidden_dim, bool)
                  and self.hidden_dim >= 0, "an integer ≥ 0 (0: one Linear layer)"),
                 ("dropout", dropout_ok, "a number in [0, 1)"),
                 ("multi_label", isinstance(self.multi_label, bool), "true or false")]
        for name, valid, rule in rules:
            if not valid:
                raise OptionError(f"action-recognition {name} must be {rule}, got {getattr(self, name)!r}")


@dataclass
class RecognitionOutput:
    """What the recognition head returns for B clips of T segments and C classes.

    logits: (B, C) the clip's class logits, from the time-mean of its features.
    segment_logits: (B, T, C) the same classifier on each segment's features alone; in evaluation (no dropout)
        their mean over time is ``logits``, the classifier being linear.
    multi_label: whether the logits are read through a sigmoid per class (else a softmax over classes).
    """

    logits: torch.Tensor
    segment_logits: torch.Tensor
    multi_label: bool = False

    def _normalise(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().sigmoid() if self.multi_label else logits.float().softmax(-1)

    def probabilities(self) -> torch.Tensor:
        """(B, C) the clip's class probabilities."""
        return self._normalise(self.logits)

    def segment_probabilities(self) -> torch.Tensor:
        """(B, T, C) each segment's class probabilities on its own."""
        return self._normalise(self.segment_logits)


def best_ranked_label(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) of each clip's labels (B, C multi-hot) the one the logits (B, C) rank highest: a clip counts as right at
    top-k when that label is among the k best classes, i.e. when any of its labels is (hit@k)."""
    return logits.float().masked_fill(labels <= 0, float("-inf")).argmax(-1)


class RecognitionHead(TaskHead):
    """Clip-level classification: the per-segment features of the active streams (audio, video: either, or both as
    a shared backbone gives them) averaged over the T segments, concatenated, and classified
    (:class:`AVARConfig`). Linear layers start as the event-localisation head's: truncated normal weights
    (std 0.02), zero biases.

    Loss: cross-entropy on the clip's label, or with ``multi_label`` binary cross-entropy per class against the
    multi-hot target. Metrics over a split: ``accuracy`` (top-1) and ``top5_accuracy`` (the label among the five
    most probable classes; all classes when there are fewer), and with ``multi_label`` ``map`` (macro mean
    average precision over the classes the split shows, :class:`~avadapt.tasks.avar.metrics.PresentClassesMAP`)
    with the accuracies as hit@1 / hit@5 (any label of the clip counts).
    """

    config_class = AVARConfig

    def __init__(self, spec: FeatureSpec, config: AVARConfig):
        super().__init__(spec, config)
        self.modalities = tuple(m for m in ("audio", "video") if m in spec.modalities)  # concat order: audio, video
        width = sum(spec.width(m) for m in self.modalities)  # D_a + D_v
        if config.hidden_dim:
            layers = [nn.Linear(width, config.hidden_dim), nn.Dropout(config.dropout),
                      nn.Linear(config.hidden_dim, config.num_classes)]
        else:
            layers = [nn.Linear(width, config.num_classes)]
        self.classifier = nn.Sequential(*layers)
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, features: AVFeatures, **inputs: torch.Tensor) -> RecognitionOutput:
        segments = torch.cat([getattr(features, m) for m in self.modalities], dim=-1)  # (B, T, D_a + D_v)
        return RecognitionOutput(logits=self.classifier(segments.mean(dim=1)),  # (B, C)
                                 segment_logits=self.classifier(segments),  # (B, T, C)
                                 multi_label=self.config.multi_label)

    def _labels(self, outputs: RecognitionOutput, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = targets["labels"]
        batch, classes = outputs.logits.shape
        wanted = (batch, classes) if self.config.multi_label else (batch,)
        if tuple(labels.shape) != wanted:
            kind = "multi-hot (B, C)" if self.config.multi_label else "one class index per clip (B,)"
            raise ValueError(f"labels must be {kind} = {wanted}, got {tuple(labels.shape)}; the dataset and the "
                             "head must agree on multi_label")
        return labels

    def loss(self, outputs: RecognitionOutput, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        labels, logits = self._labels(outputs, targets), outputs.logits.float()
        if self.config.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.cross_entropy(logits, labels)

    def metrics(self) -> MetricCollection:
        classes = self.config.num_classes
        metrics: dict[str, Any] = {
            "accuracy": MulticlassAccuracy(classes, top_k=1, average="micro"),
            "top5_accuracy": MulticlassAccuracy(classes, top_k=min(TOP_K, classes), average="micro"),
        }
        if self.config.multi_label:
            metrics["map"] = PresentClassesMAP(classes)
        return MetricCollection(metrics, compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, outputs: RecognitionOutput,
                       targets: dict[str, torch.Tensor]) -> None:
        """The clip logits against the labels; multi-label: the accuracies on each clip's best-ranked label (clips
        without any label are left out of them), mAP on the multi-hot targets."""
        labels, logits = self._labels(outputs, targets), outputs.logits.detach().float()
        if self.config.multi_label:
            metrics["map"].update(logits, labels.long())
            labelled = labels.sum(-1) > 0
            logits, labels = logits[labelled], best_ranked_label(logits[labelled], labels[labelled])
        metrics["accuracy"].update(logits, labels)
        metrics["top5_accuracy"].update(logits, labels)

    def data_options(self) -> dict[str, Any]:
        """The dataset makes multi-hot targets for a multi-label head."""
        return {"multi_label": self.config.multi_label}


@register_task
class AVARTask(AVARPrediction):
    """Audio-visual action recognition: one of the dataset's classes for a whole clip (Kinetics-Sounds by default,
    VGGSound with ``--data.dataset avar_vggsound``), selected on top-1 accuracy."""

    name = "avar"
    head_class = RecognitionHead
    monitor = "accuracy"
    dataset = "avar_kinetics_sounds"
    num_segments = 10
