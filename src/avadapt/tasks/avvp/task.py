"""Audio-visual video parsing (AVVP): trained on what a whole video holds, asked what is heard, what is seen and
what is both, second by second.

The head's outputs (:class:`AVVPOutputs`) follow the AVVP baseline (Tian et al., ECCV 2020): a video-level
probability per class, the video-level audio and visual probabilities the weak labels train, and per-segment audio
and visual probabilities, which the metrics and prediction read. Two heads: ``han``, the baseline's hybrid attention
network with attentive MMIL pooling (:class:`HANHead`), and ``mgn``, DG-SCT's multimodal grouping network
(:mod:`avadapt.tasks.avvp.mgn`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from avadapt._config import JSONConfig, positive_int
from avadapt.errors import OptionError
from avadapt.tasks.avvp.metrics import AVVPFScores, decisions
from avadapt.tasks.avvp.predict import AVVPPrediction
from avadapt.tasks.base import TaskHead, register_task
from avadapt.types import AVFeatures, FeatureSpec

PROBABILITY_CLAMP = 1e-7
"""Probabilities are clamped to [1e-7, 1 − 1e-7] before the binary cross-entropy, as both references do."""
ASSIGNMENTS = ("soft", "hard")
MOTION_INPUT = "motion_features"
"""The batch input holding per-segment R(2+1)D features (B, T, extra_video_dim), when the head takes them."""


@dataclass
class AVVPConfig(JSONConfig):
    """The AVVP head: ``han`` (default; the AVVP baseline's) or ``mgn`` (DG-SCT's).

    num_classes: LLP's 25.
    dim: the head's width (None: 512 for ``han``, the baseline's; 128 for ``mgn``, DG-SCT's ``--dim``).
    heads: attention heads (None: 1 for ``han``, 8 for ``mgn``).
    ffn_dim, dropout: the ``han`` layer's feed-forward width (512) and dropout (0.1).
    visual_smoothing: the visual video-level target is s·y + (1 − s)/2 (s = 0.9: 0.9y + 0.05), as both references
        smooth it: a class of the video may well not be visible.
    extra_video_dim: width of per-segment features from a separate frozen video network (512 for torchvision's
        R(2+1)D-18, :mod:`avadapt.tasks.avvp.motion`), projected to ``dim`` and fused with the visual stream by a
        Linear on their concatenation, as both references do; 0 (default): none.
    audio_depth, visual_depth, cross_modal_depth: ``mgn``'s self-attention blocks before each grouping (3, 3, 6).
    unimodal_assignment, cross_modal_assignment: ``mgn``'s assignment of segments to class groups, ``soft`` (the
        DG-SCT recipe) or ``hard`` (Gumbel straight-through while training, argmax after).
    grouping_drop_path: ``mgn``'s stochastic depth in its blocks (0.1).
    gate_scale, temporal_dim: ``mgn``'s audio-guided gate on the visual stream, v·(1 + γ·g_a), γ = 0.05, computed by
        a BiLSTM and a 2-layer encoder of width 64 over the audio segments.
    class_token_weight: weight of each of ``mgn``'s two class-token cross-entropies (1: the loss holds 2 × CE).
    """

    num_classes: int = 25
    head: str = "han"
    dim: int | None = None
    heads: int | None = None
    ffn_dim: int = 512
    dropout: float = 0.1
    visual_smoothing: float = 0.9
    extra_video_dim: int = 0
    audio_depth: int = 3
    visual_depth: int = 3
    cross_modal_depth: int = 6
    unimodal_assignment: str = "soft"
    cross_modal_assignment: str = "soft"
    grouping_drop_path: float = 0.1
    gate_scale: float = 0.05
    temporal_dim: int = 64
    class_token_weight: float = 1.0

    def __post_init__(self):
        if self.head not in AVVP_HEADS:
            raise OptionError(f"AVVP head must be one of {tuple(AVVP_HEADS)}, got {self.head!r}")
        if self.dim is None:
            self.dim = 512 if self.head == "han" else 128
        if self.heads is None:
            self.heads = 1 if self.head == "han" else 8
        rules = [("num_classes", positive_int, "a positive integer"),
                 ("heads", positive_int, "a positive integer"),
                 ("dim", lambda v: positive_int(v) and v % self.heads == 0,
                  f"a positive multiple of heads ({self.heads})"),
                 ("ffn_dim", positive_int, "a positive integer"),
                 ("extra_video_dim", lambda v: isinstance(v, int) and v >= 0, "a whole number ≥ 0"),
                 ("audio_depth", positive_int, "a positive integer"),
                 ("visual_depth", positive_int, "a positive integer"),
                 ("cross_modal_depth", positive_int, "a positive integer"),
                 ("temporal_dim", lambda v: positive_int(v) and v % 4 == 0, "a positive multiple of 4"),
                 ("visual_smoothing", lambda v: 0 <= v <= 1, "within 0..1"),
                 ("dropout", lambda v: 0 <= v < 1, "within [0, 1)"),
                 ("grouping_drop_path", lambda v: 0 <= v < 1, "within [0, 1)"),
                 ("unimodal_assignment", lambda v: v in ASSIGNMENTS, f"one of {ASSIGNMENTS}"),
                 ("cross_modal_assignment", lambda v: v in ASSIGNMENTS, f"one of {ASSIGNMENTS}")]
        for name, valid, rule in rules:
            if not valid(getattr(self, name)):
                raise OptionError(f"AVVP {name} must be {rule}, got {getattr(self, name)!r}")


@dataclass
class AVVPOutputs:
    """What an AVVP head returns for B videos of T segments and C classes (probabilities in [0, 1], except
    ``mgn``'s soft-assigned segment probabilities, which its reference scales by up to 2; see its module)."""

    video: torch.Tensor  # (B, C) the class occurs in the video, in either modality
    audio: torch.Tensor  # (B, C) the class is heard somewhere (trained against the weak labels)
    visual: torch.Tensor  # (B, C) the class is seen somewhere (trained against smoothed weak labels)
    audio_segments: torch.Tensor  # (B, T, C) the class is heard in segment t
    visual_segments: torch.Tensor  # (B, T, C) the class is seen in segment t
    class_token_logits: tuple[torch.Tensor, torch.Tensor] | None = None  # mgn: (C, C) audio and visual tokens

    def decisions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, T) bool audio and visual decisions: segment and video-level probability both ≥ 0.5."""
        video = self.video.detach().float()
        return (decisions(self.audio_segments.detach().float(), video),
                decisions(self.visual_segments.detach().float(), video))

    def segment_probabilities(self) -> torch.Tensor:
        """(B, T, 3, C): the audio and visual segment probabilities and the video-level one, repeated per segment;
        :meth:`decisions` is (a ≥ .5 ∧ p ≥ .5, v ≥ .5 ∧ p ≥ .5) of them."""
        video = self.video.float()[:, None, :].expand_as(self.audio_segments)  # (B, T, C)
        return torch.stack([self.audio_segments.float(), self.visual_segments.float(), video], dim=2)


def binary_cross_entropy(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of clamped probabilities, in float32 (``F.binary_cross_entropy`` refuses autocast)."""
    p = probabilities.float().clamp(PROBABILITY_CLAMP, 1 - PROBABILITY_CLAMP)
    y = targets.float()
    return -(y * p.log() + (1 - y) * (1 - p).log()).mean()


class AVVPHead(TaskHead):
    """What both AVVP heads share: the inputs they check, the weakly supervised loss and the metrics."""

    config_class = AVVPConfig

    def __init__(self, spec: FeatureSpec, config: AVVPConfig):
        super().__init__(spec, config)
        missing = [m for m in ("audio", "video") if m not in spec.modalities]
        if missing:
            raise OptionError(f"the AVVP heads parse both modalities; this model has no {' or '.join(missing)} "
                              "branch")

    def motion(self, motion_features: torch.Tensor | None) -> torch.Tensor | None:
        """The R(2+1)D features where the config takes them (an error names the missing input)."""
        if self.config.extra_video_dim and motion_features is None:
            raise OptionError(f"this AVVP head fuses {self.config.extra_video_dim}-wide R(2+1)D features "
                              f"(extra_video_dim): give the data module dataset_options {{{MOTION_INPUT}: FOLDER}} "
                              "of <id>.npy files (avadapt.tasks.avvp.motion)")
        return motion_features if self.config.extra_video_dim else None

    def loss(self, outputs: AVVPOutputs, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """BCE(video, y) + BCE(audio, y) + BCE(visual, s·y + (1 − s)/2) with the weak labels y (B, C), plus, for
        ``mgn``, w·[CE(audio tokens → their classes) + CE(visual tokens → their classes)]."""
        labels = targets["labels"].float()
        smoothing = self.config.visual_smoothing
        loss = (binary_cross_entropy(outputs.video, labels) + binary_cross_entropy(outputs.audio, labels)
                + binary_cross_entropy(outputs.visual, smoothing * labels + (1 - smoothing) / 2))
        if outputs.class_token_logits is not None:
            own = torch.arange(self.config.num_classes, device=labels.device)
            loss = loss + self.config.class_token_weight * sum(F.cross_entropy(logits.float(), own)
                                                               for logits in outputs.class_token_logits)
        return loss

    def metrics(self) -> MetricCollection:
        """:class:`~avadapt.tasks.avvp.metrics.AVVPFScores`: ``segment_audio`` … ``event_event_av``."""
        return MetricCollection({"avvp": AVVPFScores()}, compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, outputs: AVVPOutputs, targets: dict[str, torch.Tensor]
                       ) -> None:
        if "audio_labels" not in targets:
            raise OptionError("AVVP is scored against dense audio and visual labels, which only the val and test "
                              "splits have")
        audio, visual = outputs.decisions()
        metrics.update(audio, visual, targets["audio_labels"].bool(), targets["visual_labels"].bool())


class MotionFusion(nn.Module):
    """Both references' fusion of per-segment frame features with R(2+1)D clip features:
    Linear_{2d→d}([v; Linear_{E→d}(m)])."""

    def __init__(self, dim: int, extra_dim: int):
        super().__init__()
        self.motion_projection = nn.Linear(extra_dim, dim)
        self.fusion = nn.Linear(2 * dim, dim)

    def forward(self, video: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """video: (B, T, d), motion: (B, T, E) → (B, T, d)."""
        return self.fusion(torch.cat([video, self.motion_projection(motion.to(video.dtype))], dim=-1))


class HybridAttentionLayer(nn.Module):
    """The AVVP baseline's HAN layer for a query stream x and the other stream y (Tian et al. 2020, Eq. 1–2):
    x ← LN(x + Drop(Attn(x, y, y)) + Drop(Attn(x, x, x))), then x ← LN(x + Drop(FFN(x))), FFN = Linear, ReLU,
    Dropout, Linear."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop_cross, self.drop_self, self.drop_ffn = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """x, other: (B, T, d) → (B, T, d)."""
        cross = self.cross_attention(x, other, other, need_weights=False)[0]
        own = self.self_attention(x, x, x, need_weights=False)[0]
        x = self.norm1(x + self.drop_cross(cross) + self.drop_self(own))
        return self.norm2(x + self.drop_ffn(self.ffn(x)))


class HANHead(AVVPHead):
    """The AVVP baseline (AVVP-ECCV20 ``nets/net_audiovisual.py``, MMIL_Net) on the adapted backbone's segments:

    1. a = Linear(audio), v = Linear(video) (to d = 512), v fused with R(2+1)D features where given;
    2. one hybrid attention layer, the same weights for both streams as in the reference:
       a' = HAN(a, v), v' = HAN(v, a);
    3. attentive MMIL pooling over x_{t,m} ∈ {a'_t, v'_t}: P_{t,m} = σ(W_p x) (B, T, 2, C) per segment and modality,
       temporal attention softmax_t(W_t x), modality attention softmax_m(W_m x); the video-level audio and visual
       probabilities Σ_t softmax_t·P and the video's Σ_t Σ_m softmax_t·softmax_m·P.

    The reference also builds encoders it never calls (two Transformer encoders, a cross-modal one); they are left
    out.
    """

    def __init__(self, spec: FeatureSpec, config: AVVPConfig):
        super().__init__(spec, config)
        dim, classes = config.dim, config.num_classes
        self.audio_projection = nn.Linear(spec.width("audio"), dim)
        self.video_projection = nn.Linear(spec.width("video"), dim)
        self.motion_fusion = MotionFusion(dim, config.extra_video_dim) if config.extra_video_dim else None
        self.hybrid_attention = HybridAttentionLayer(dim, config.heads, config.ffn_dim, config.dropout)
        self.classifier = nn.Linear(dim, classes)
        self.temporal_attention = nn.Linear(dim, classes)
        self.modality_attention = nn.Linear(dim, classes)

    def forward(self, features: AVFeatures, motion_features: torch.Tensor | None = None, **inputs: torch.Tensor
                ) -> AVVPOutputs:
        audio = self.audio_projection(features.audio)  # (B, T, d)
        video = self.video_projection(features.video)  # (B, T, d)
        motion = self.motion(motion_features)
        if motion is not None:
            video = self.motion_fusion(video, motion)
        audio, video = self.hybrid_attention(audio, video), self.hybrid_attention(video, audio)
        x = torch.stack([audio, video], dim=2)  # (B, T, 2, d)
        segments = torch.sigmoid(self.classifier(x))  # (B, T, 2, C)
        over_time = torch.softmax(self.temporal_attention(x), dim=1)  # (B, T, 2, C)
        over_modality = torch.softmax(self.modality_attention(x), dim=2)  # (B, T, 2, C)
        pooled = over_time * segments  # (B, T, 2, C)
        return AVVPOutputs(video=(pooled * over_modality).sum(dim=(1, 2)), audio=pooled[:, :, 0].sum(1),
                           visual=pooled[:, :, 1].sum(1), audio_segments=segments[:, :, 0],
                           visual_segments=segments[:, :, 1])


AVVP_HEADS: dict[str, type[AVVPHead]] = {"han": HANHead}
"""The AVVP heads by ``AVVPConfig.head``; ``avadapt.tasks.avvp.mgn`` adds ``mgn``."""


@register_task
class AVVPTask(AVVPPrediction):
    """Audio-visual video parsing on LLP: per second, which of 25 events are heard, seen, or both; selected on the
    segment-level Type@AV F (the reference's choice), by the head ``AVVPConfig.head`` names."""

    name = "avvp"
    head_class = AVVPHead
    monitor = "segment_type_av"
    dataset = "llp"
    num_segments = 10
    inputs: ClassVar[tuple[str, ...]] = (MOTION_INPUT,)

    def build_head(self, spec: FeatureSpec, config: AVVPConfig) -> TaskHead:
        """The head ``config.head`` names (:data:`AVVP_HEADS`)."""
        return AVVP_HEADS[config.head](spec, config)
