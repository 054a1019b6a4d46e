"""DG-SCT's AVVP head (``AVVPConfig.head = "mgn"``): the multimodal grouping network (MGN; Mo & Tian, "Multi-modal
Grouping Network for Weakly-Supervised Audio-Visual Video Parsing", NeurIPS 2022), as DG-SCT's AVVP code
(``DG-SCT/AVVP/nets/mgn.py``, ``grouping.py``) puts it on its adapted Swin-V2-L and HTS-AT.

One learnable token per class and modality; segments are grouped into class groups:

1. class-aware unimodal grouping: the T segments of one modality and its C class tokens pass ``depth``
   self-attention blocks together, then a grouping block assigns the segments to the tokens' groups → (B, C, d).
   The audio segments are first grouped onto the visual segments (a T → T grouping, the reference's HAN step);
2. modality-aware cross-modal grouping: the audio class groups and the visual class groups pass 6 blocks together,
   then the audio groups are assigned to the visual ones → (B, C, d);
3. probabilities: σ(Linear_{d→1}) of each class group: the video-level one from the cross-modal groups, the
   audio and visual ones from the unimodal groups; a segment's probability is its class's times the segment's
   assignment to the class.

With ``soft`` assignment (DG-SCT's recipe) the assignment map the reference multiplies by is 1 + softmax over the
segments of the softmax over the groups, so a segment's probability lies between 1 and 2 times its class's
(close to 1.1 times it when the segments are alike); ``hard`` assignment uses the one-hot map. Both as the
reference computes them.

Before the grouping, DG-SCT's AVVP temporal module gates the visual segments by the audio: v·(1 + γ·g_a) with
g_a = σ(Linear(Enc(Linear(BiLSTM(a))))). The reference computes a matching gate of the audio by the visual stream
but never uses its result (the audio grouping reads the ungated audio), so that half is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

from avadapt.tasks.avvp.task import AVVP_HEADS, AVVPConfig, AVVPHead, AVVPOutputs, MotionFusion
from avadapt.types import AVFeatures, FeatureSpec

MLP_RATIO = 4.0  # the blocks' and the grouping's channel MLPs
TOKEN_MLP_RATIO = 0.5  # the grouping's MLP over the token axis, hidden width 0.5·d
ASSIGN_EPS = 1.0  # the assignment is normalised by (its sum over the segments + 1), GroupViT's default


class SelfAttentionBlock(nn.Module):
    """Pre-norm Transformer block: x + DropPath(MHA(LN x)), then x + DropPath(MLP(LN x)) (GELU, ratio 4)."""

    def __init__(self, dim: int, heads: int, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * MLP_RATIO))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, d) → (B, N, d)."""
        normed = self.norm1(x)
        x = x + self.drop_path(self.attention(normed, normed, normed, need_weights=False)[0])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GroupingBlock(nn.Module):
    """GroupViT's grouping block (Xu et al., CVPR 2022) as MGN uses it: S_in group tokens become S_out groups of
    the L segments x.

    1. tokens ← LN(MLP over the token axis S_in → S_out (LN tokens)), then a post-norm cross-attention block of the
       tokens over LN x (heads as configured);
    2. assignment A (B, S_out, L) from single-head scaled dot products, normalised over the groups: softmax
       (``soft``), one-hot argmax with a straight-through gradient (``hard``), or Gumbel-softmax with it while
       training (``hard`` with ``gumbel``);
    3. groups = tokens + Linear(Â·V(x)) with Â = A / (Σ_segments A + 1); groups += MLP(LN groups).

    Returns the groups (B, S_out, d) and the assignment maps the reference reads: ``hard``, A itself, and
    ``soft``, 1 + softmax over the segments of the group-softmax.
    """

    def __init__(self, dim: int, heads: int, tokens_in: int, tokens_out: int, hard: bool, gumbel: bool):
        super().__init__()
        self.hard, self.gumbel = hard, gumbel
        self.norm_tokens, self.norm_x = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token_mlp = Mlp(tokens_in, int(dim * TOKEN_MLP_RATIO), tokens_out)
        self.norm_projected = nn.LayerNorm(dim)
        self.cross_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_norm, self.cross_norm_post = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.cross_mlp = Mlp(dim, int(dim * MLP_RATIO))
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.assigned_projection = nn.Linear(dim, dim)
        self.norm_groups = nn.LayerNorm(dim)
        self.channel_mlp = Mlp(dim, int(dim * MLP_RATIO))

    def assign(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, S, L) logits → the assignment of each segment to the groups (normalised over S)."""
        if self.gumbel and self.training:
            return F.gumbel_softmax(logits, tau=1.0, hard=self.hard, dim=-2)
        soft = logits.softmax(dim=-2)
        if not self.hard:
            return soft
        one_hot = torch.zeros_like(soft).scatter_(-2, soft.argmax(dim=-2, keepdim=True), 1.0)
        return one_hot - soft.detach() + soft  # straight through

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (B, L, d) segments, tokens: (B, S_in, d) → groups (B, S_out, d), maps {hard, soft} (B, S_out, L)."""
        x = self.norm_x(x)
        tokens = self.norm_projected(self.token_mlp(self.norm_tokens(tokens).transpose(1, 2)).transpose(1, 2))
        attended = self.cross_attention(tokens, x, x, need_weights=False)[0]  # (B, S_out, d)
        tokens = tokens + attended
        tokens = self.cross_norm_post(tokens + self.cross_mlp(self.cross_norm(tokens)))
        scale = x.shape[-1] ** -0.5
        logits = self.query(tokens) @ self.key(x).transpose(1, 2) * scale  # (B, S_out, L)
        assignment = self.assign(logits)
        maps = {"hard": assignment, "soft": 1.0 + logits.softmax(dim=-2).softmax(dim=-1)}
        weights = assignment / (assignment.sum(dim=-1, keepdim=True) + ASSIGN_EPS)
        groups = tokens + self.assigned_projection(weights @ self.value(x))  # (B, S_out, d)
        return groups + self.channel_mlp(self.norm_groups(groups)), maps


class ModalityGrouping(nn.Module):
    """MGN's ``ModalityTrans``: ``depth`` self-attention blocks over [segments; group tokens], then an optional
    grouping of the segments onto another stream's segments, then the grouping into the tokens' groups."""

    def __init__(self, dim: int, depth: int, heads: int, groups: int, hard: bool, drop_path: float,
                 other_segments: int = 0):
        super().__init__()
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, heads, drop_path) for _ in range(depth))
        # the audio branch's first grouping, onto the visual segments, assigns the other way round (the reference
        # passes ``hard=not hard_assignment``): hard with Gumbel noise for the soft recipe
        self.segment_grouping = (GroupingBlock(dim, heads, other_segments, other_segments, hard=not hard,
                                               gumbel=not hard) if other_segments else None)
        self.grouping = GroupingBlock(dim, heads, groups, groups, hard=hard, gumbel=hard)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, other: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: (B, L, d), tokens: (B or 1, S, d), other: (B, T', d) → groups (B, S, d), maps (B, S, L)."""
        count = tokens.shape[1]
        joint = torch.cat([x, tokens.expand(x.shape[0], -1, -1)], dim=1)  # (B, L + S, d)
        for block in self.blocks:
            joint = block(joint)
        x, tokens = joint[:, :-count], joint[:, -count:]
        if self.segment_grouping is not None:
            x = self.segment_grouping(x, other)[0]  # (B, T', d)
        return self.grouping(x, tokens)


class AudioGuidedGate(nn.Module):
    """g_a (B, T, 1) = σ(Linear(Enc(Linear(BiLSTM(a))))): DG-SCT's AVVP temporal module, the part its output uses
    (BiLSTM with ``temporal_dim`` units a direction, a 2-layer post-norm encoder of width ``temporal_dim``, 4
    heads, FFN 1024)."""

    def __init__(self, dim: int, temporal_dim: int, heads: int = 4, ffn_dim: int = 1024, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(dim, temporal_dim, batch_first=True, bidirectional=True)  # → 2·temporal_dim
        layer = nn.TransformerEncoderLayer(temporal_dim, heads, ffn_dim, dropout=0.1, batch_first=True)
        self.encoder = nn.Sequential(nn.Linear(2 * temporal_dim, temporal_dim),
                                     nn.TransformerEncoder(layer, layers, enable_nested_tensor=False))
        self.gate = nn.Linear(temporal_dim, 1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, T, d) → (B, T, 1) in (0, 1)."""
        return torch.sigmoid(self.gate(self.encoder(self.lstm(audio)[0])))


class MGNHead(AVVPHead):
    """DG-SCT's AVVP head (d = 128, C = 25, 8 heads, depths 3 / 3 / 6):

    a = Linear(audio); v = Linear(video)·(1 + γ·g_a(a)), fused with R(2+1)D features where given;
    visual groups V = G_v(v, visual tokens); audio groups A = G_a(a, audio tokens, onto v); cross-modal groups
    X = G_av(A, V); video = σ(W X), audio = σ(W_a A), visual = σ(W_v V) (B, C); per segment, audio's class
    probability times its assignment map (and so for visual); the class tokens are trained to be told apart by
    a shared Linear_{d→C} (``AVVPOutputs.class_token_logits``).

    Linear weights start truncated-normal (std 0.02) with zero biases, LayerNorms at one and zero, the class
    tokens at zero, as the reference initialises them; the gate keeps PyTorch's initialisation, as there.
    """

    def __init__(self, spec: FeatureSpec, config: AVVPConfig):
        super().__init__(spec, config)
        dim, classes, heads = config.dim, config.num_classes, config.heads
        unimodal_hard, cross_modal_hard = config.unimodal_assignment == "hard", config.cross_modal_assignment == "hard"
        self.audio_projection = nn.Linear(spec.width("audio"), dim)
        self.video_projection = nn.Linear(spec.width("video"), dim)
        self.motion_fusion = MotionFusion(dim, config.extra_video_dim) if config.extra_video_dim else None
        self.audio_tokens = nn.Parameter(torch.zeros(classes, dim))
        self.visual_tokens = nn.Parameter(torch.zeros(classes, dim))
        self.audio_grouping = ModalityGrouping(dim, config.audio_depth, heads, classes, unimodal_hard,
                                               config.grouping_drop_path, other_segments=spec.num_segments)
        self.visual_grouping = ModalityGrouping(dim, config.visual_depth, heads, classes, unimodal_hard,
                                                config.grouping_drop_path)
        self.cross_modal_grouping = ModalityGrouping(dim, config.cross_modal_depth, heads, classes, cross_modal_hard,
                                                     config.grouping_drop_path)
        self.video_classifier, self.audio_classifier = nn.Linear(dim, 1), nn.Linear(dim, 1)
        self.visual_classifier, self.token_classifier = nn.Linear(dim, 1), nn.Linear(dim, classes)
        self.apply(_initialise)
        self.audio_gate = AudioGuidedGate(dim, config.temporal_dim)
        self.assignment = config.unimodal_assignment  # which map the segment probabilities use

    def forward(self, features: AVFeatures, motion_features: torch.Tensor | None = None, **inputs: torch.Tensor
                ) -> AVVPOutputs:
        audio = self.audio_projection(features.audio)  # (B, T, d)
        video = self.video_projection(features.video)  # (B, T, d)
        video = video * (1 + self.config.gate_scale * self.audio_gate(audio))
        motion = self.motion(motion_features)
        if motion is not None:
            video = self.motion_fusion(video, motion)
        visual_groups, visual_maps = self.visual_grouping(video, self.visual_tokens[None])  # (B, C, d), (B, C, T)
        audio_groups, audio_maps = self.audio_grouping(audio, self.audio_tokens[None], other=video)
        joint, _ = self.cross_modal_grouping(audio_groups, visual_groups)  # (B, C, d)
        audio_probability = torch.sigmoid(self.audio_classifier(audio_groups))  # (B, C, 1)
        visual_probability = torch.sigmoid(self.visual_classifier(visual_groups))  # (B, C, 1)
        return AVVPOutputs(
            video=torch.sigmoid(self.video_classifier(joint)).squeeze(-1),
            audio=audio_probability.squeeze(-1), visual=visual_probability.squeeze(-1),
            audio_segments=(audio_probability * audio_maps[self.assignment]).transpose(1, 2),  # (B, T, C)
            visual_segments=(visual_probability * visual_maps[self.assignment]).transpose(1, 2),
            class_token_logits=(self.token_classifier(self.audio_tokens), self.token_classifier(self.visual_tokens)))


def _initialise(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):  # its query/key/value projections, Linear layers in the reference
        trunc_normal_(module.in_proj_weight, std=0.02)
        nn.init.zeros_(module.in_proj_bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


AVVP_HEADS["mgn"] = MGNHead
