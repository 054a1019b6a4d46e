"""DG-SCT's AVE head (``AVEConfig.head = "cmbs"``): a CMRAN-style temporal module, then CMBS's event relevance
and video-level classes.

CMBS (Xia & Zhao, "Cross-Modal Background Suppression for Audio-Visual Event Localization", CVPR 2022) splits
localisation in two: is second t part of the clip's event (a relevance logit per second), and which event is it
(one class for the whole clip). DG-SCT (NeurIPS 2023) puts this head, after its temporal module
(:class:`~avadapt.layers.temporal_relation.TemporalRelationModule`), on its adapted Swin-V2-L and HTS-AT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from avadapt.errors import OptionError
from avadapt.layers.temporal_relation import TemporalRelationModule
from avadapt.tasks.ave.task import AVE_HEADS, AVEConfig, segment_accuracy
from avadapt.tasks.base import TaskHead
from avadapt.types import AVFeatures, FeatureSpec

RELEVANCE_THRESHOLD = 0.5
"""A second belongs to the clip's event where σ(relevance) exceeds this (CMBS's ``compute_accuracy_supervised``)."""


@dataclass
class CMBSOutput:
    """What the CMBS head returns for B clips of T segments and K = num_classes − 1 events."""

    relevance: torch.Tensor  # (B, T) logits that second t is part of the clip's event
    event_logits: torch.Tensor  # (B, K) video-level class logits, av_score already added with its weight
    av_score: torch.Tensor  # (B, K) mean over the top-k seconds of the audio and visual class activations
    av_gate: torch.Tensor  # (B, T) the temporal module's gate product g_a·g_v, in (0, 1)

    def segment_labels(self) -> torch.Tensor:
        """(B, T) long: the video-level argmax class where σ(relevance) > 0.5, background (index K) elsewhere."""
        event = self.event_logits.argmax(-1, keepdim=True).expand_as(self.relevance)  # (B, T)
        background = torch.full_like(event, self.event_logits.shape[-1])
        return torch.where(self.relevance.float().sigmoid() > RELEVANCE_THRESHOLD, event, background)

    def segment_probabilities(self) -> torch.Tensor:
        """(B, T, K + 1) per-second class probabilities whose argmax is :meth:`segment_labels` (but at r = ½
        exactly, a relevance logit of exactly 0, where it takes the class): with r = σ(relevance_t) and
        q = softmax(event_logits), event k gets r·q_k and background (1 − r)·max_k q_k, normalised to sum to one.
        """
        relevance = self.relevance.float().sigmoid()[..., None]  # (B, T, 1)
        classes = self.event_logits.float().softmax(-1)[:, None, :]  # (B, 1, K)
        events = relevance * classes  # (B, T, K)
        background = (1 - relevance) * classes.amax(-1, keepdim=True)  # (B, T, 1)
        scores = torch.cat([events, background], dim=-1)  # (B, T, K + 1)
        return scores / scores.sum(-1, keepdim=True)


def top_k_mean(activations: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, K) class activation sequences → (B, K): per class, the mean of its k highest values over time
    (all T when T < k)."""
    return activations.topk(min(k, activations.shape[1]), dim=1).values.mean(dim=1)


def video_classes(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-second labels (B, T) with background = num_classes − 1 → the clip's event class (B,) and whether the
    clip has any event second (B,) bool. The class is the event with the most seconds (AVE has one per clip),
    the lower index on a tie; a clip without foreground gets 0, a placeholder the losses leave out."""
    background = num_classes - 1
    counts = F.one_hot(labels, num_classes)[..., :background].sum(dim=1)  # (B, K) event seconds per class
    return counts.argmax(-1), counts.sum(-1) > 0


class CMBSHead(TaskHead):
    """DG-SCT's AVE head: the temporal module, then CMBS's relevance and class scores (d = 256, K = 28). With v, a
    the temporal module's gated (B, T, d) sequences and f = (v + a) / 2:

    * relevance_t = Linear_{d→1}(f_t);
    * event_logits = Linear_{d→K}(max_t f_t) + w·av_score, with
      av_score = ½ [top-k-mean_t(Linear_{d→K} v) + top-k-mean_t(Linear_{d→K} a)] (k = 4, w = 0.3).

    Loss (:meth:`loss_terms`, summed): BCE-with-logits(relevance, foreground mask) + BCE-with-logits(g_a·g_v,
    foreground mask) + CE(event_logits, clip class) + CE(av_score, clip class). The gate product, a probability
    already, goes through BCE-with-logits as the reference does: a bounded push up on event seconds and down
    elsewhere. Clips without any event second add to the first two terms only. Metric: segment accuracy over the
    split on :meth:`CMBSOutput.segment_labels` (DG-SCT's code averages per-batch accuracies instead, which differs
    when the last batch is smaller). DG-SCT's code also builds modules whose outputs are never used (two
    audio-visual interaction blocks and two LayerNorms, 0.53M parameters; a self-attention per cross-modal decoder
    layer, 0.53M); they are left out.
    """

    config_class = AVEConfig

    def __init__(self, spec: FeatureSpec, config: AVEConfig):
        super().__init__(spec, config)
        if not {"audio", "video"} <= set(spec.modalities):
            raise OptionError(f"the CMBS head needs both audio and video features, the method gives {spec.modalities}")
        events, dim = config.num_classes - 1, config.temporal_dim
        self.temporal = TemporalRelationModule(
            video_dim=spec.width("video"), audio_dim=spec.width("audio"),
            video_projection_dim=config.video_projection_dim, audio_projection_dim=config.audio_projection_dim,
            dim=dim, gate_scale=config.gate_scale,
        )
        self.relevance = nn.Linear(dim, 1)
        self.event_classifier = nn.Linear(dim, events)
        self.video_activation = nn.Linear(dim, events)
        self.audio_activation = nn.Linear(dim, events)

    def forward(self, features: AVFeatures, **inputs: torch.Tensor) -> CMBSOutput:
        temporal = self.temporal(features.video, features.audio)  # (B, T, d) each, gate (B, T)
        fused = (temporal.video + temporal.audio) / 2  # (B, T, d)
        av_score = (top_k_mean(self.video_activation(temporal.video), self.config.top_k)
                    + top_k_mean(self.audio_activation(temporal.audio), self.config.top_k)) / 2  # (B, K)
        event_logits = self.event_classifier(fused.amax(dim=1)) + self.config.av_score_weight * av_score  # (B, K)
        return CMBSOutput(relevance=self.relevance(fused).squeeze(-1), event_logits=event_logits,
                          av_score=av_score, av_gate=temporal.av_gate)

    def loss_terms(self, outputs: CMBSOutput, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The four terms of the loss, each a scalar: ``relevance``, ``gate``, ``event``, ``av_score``."""
        labels = targets["labels"]
        foreground = (labels != self.config.num_classes - 1).float()  # (B, T)
        clip_class, has_event = video_classes(labels, self.config.num_classes)

        def clip_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
            per_clip = F.cross_entropy(logits.float(), clip_class, reduction="none")  # (B,)
            return (per_clip * has_event).sum() / has_event.sum().clamp(min=1)

        return {
            "relevance": F.binary_cross_entropy_with_logits(outputs.relevance.float(), foreground),
            "gate": F.binary_cross_entropy_with_logits(outputs.av_gate.float(), foreground),
            "event": clip_cross_entropy(outputs.event_logits),
            "av_score": clip_cross_entropy(outputs.av_score),
        }

    def loss(self, outputs: CMBSOutput, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """The sum of :meth:`loss_terms`, unweighted as in CMBS and DG-SCT."""
        return torch.stack(list(self.loss_terms(outputs, targets).values())).sum()

    def metrics(self) -> MetricCollection:
        return segment_accuracy(self.config.num_classes)

    def update_metrics(self, metrics: MetricCollection, outputs: CMBSOutput,
                       targets: dict[str, torch.Tensor]) -> None:
        """The per-second labels of the relevance rule against the (B, T) labels, scored per segment."""
        metrics.update(outputs.segment_labels().flatten(), targets["labels"].flatten())

    def predict(self, outputs: CMBSOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) class index (the relevance rule) and its probability (:meth:`CMBSOutput.segment_probabilities`)."""
        labels = outputs.segment_labels()
        return labels, outputs.segment_probabilities().gather(-1, labels[..., None]).squeeze(-1)


AVE_HEADS["cmbs"] = CMBSHead
