"""The DG-SCT adapter: cross-modal alignment, LAVISH latent exchange, dual (channel + spatial) guidance,
optional guided temporal attention, and LAVISH's gated bottleneck."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avadapt.methods.base import run_frozen_block
from avadapt.methods.dg_sct.config import DGSCTConfig
from avadapt.methods.lavish.modules import GroupedBottleneck, LatentTokenFusion

TEMPORAL_RATIO = 1 / 8  # width of the temporal attention's query/key projections, as LAVISH's bottleneck


@dataclass(frozen=True)
class TokenLayout:
    """The tokens one block of one encoder sees: ``prefix`` class tokens, then a row-major ``grid``, ``dim`` wide."""

    grid: tuple[int, int]
    dim: int
    prefix: int = 0

    @property
    def count(self) -> int:
        return self.prefix + self.grid[0] * self.grid[1]


class TokenAxisAlignment(nn.Module):
    """Ŷ = Linear_{D_o→D}(Conv1×1_{N_o→N}(Y)): the other modality's N_o tokens mixed into this one's N positions
    (a 1×1 convolution whose channels are the tokens, with bias), then brought to this width.

    The official AVE, AVQA, AVVP and MS3 alignment. The token mixing is large where both grids are: 4096 audio
    tokens (HTS-AT stage 1) against 2304 visual ones (Swin-V2/192) are 9.4M weights per adapter.
    """

    def __init__(self, other: TokenLayout, own: TokenLayout):
        super().__init__()
        self.token_mixing = nn.Conv1d(other.count, own.count, kernel_size=1)
        self.projection = nn.Linear(other.dim, own.dim)

    def forward(self, other: torch.Tensor) -> torch.Tensor:
        """(S, N_o, D_o) → (S, N, D)."""
        return self.projection(self.token_mixing(other))  # conv: (S, N_o, D_o) → (S, N, D_o)


class GridResizeAlignment(nn.Module):
    """Ŷ = bicubic resize of Linear_{D_o→D}(Y) from the other token grid to this one (the official S4 alignment).

    Class tokens: this side's class position takes the other side's projected class token, or the mean of the
    resized grid where the other side has none; the other side's class token is dropped where this one has none.
    """

    token_mixing = None

    def __init__(self, other: TokenLayout, own: TokenLayout):
        super().__init__()
        self.other, self.own = other, own
        self.projection = nn.Linear(other.dim, own.dim)

    def forward(self, other: torch.Tensor) -> torch.Tensor:
        """(S, N_o, D_o) → (S, N, D)."""
        y = self.projection(other)  # (S, N_o, D)
        prefix, patches = y[:, :self.other.prefix], y[:, self.other.prefix:]
        s, _, d = patches.shape
        grid = patches.transpose(1, 2).reshape(s, d, *self.other.grid)  # (S, D, h_o, w_o)
        if self.other.grid != self.own.grid:
            grid = F.interpolate(grid, size=self.own.grid, mode="bicubic", align_corners=False)
        patches = grid.flatten(2).transpose(1, 2)  # (S, h·w, D)
        if not self.own.prefix:
            return patches
        cls = prefix[:, :1] if self.other.prefix else patches.mean(1, keepdim=True)  # (S, 1, D)
        return torch.cat([cls.expand(-1, self.own.prefix, -1), patches], dim=1)


class DualGuidance(nn.Module):
    """Channel map c and spatial logits s of this modality's tokens X, guided by the other modality's summary a
    (the mean of its aligned tokens Ŷ), DG-SCT §3:

      c = σ(W_c · ReLU(W_b · mean_N[ReLU(W_a1·a) ⊙ ReLU(W_v1·X)]))      (S, 1, D), in (0, 1)
      X_c = X ⊙ (1 + c)
      s = W_s(ReLU(W_v2·X_c) ⊙ ReLU(W_a2·a))                             (S, N, 1)

    Widths: W_a1, W_v1 D→D; W_b D→D/2; W_c D/2→D; W_v2, W_a2 D→D/2; W_s D/2→1 (about 4·D² weights).
    """

    def __init__(self, dim: int):
        super().__init__()
        half = max(1, dim // 2)
        self.other_channel = nn.Linear(dim, dim)  # W_a1
        self.own_channel = nn.Linear(dim, dim)  # W_v1
        self.channel_squeeze = nn.Linear(dim, half)  # W_b
        self.channel_excite = nn.Linear(half, dim)  # W_c
        self.own_spatial = nn.Linear(dim, half)  # W_v2
        self.other_spatial = nn.Linear(dim, half)  # W_a2
        self.spatial_logit = nn.Linear(half, 1)  # W_s

    def forward(self, x: torch.Tensor, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (S, N, D), summary (S, 1, D) → c (S, 1, D), s (S, N, 1)."""
        joint = F.relu(self.other_channel(summary)) * F.relu(self.own_channel(x))  # (S, N, D)
        squeezed = F.relu(self.channel_squeeze(joint.mean(1, keepdim=True)))  # (S, 1, D/2)
        channel = torch.sigmoid(self.channel_excite(squeezed))  # (S, 1, D)
        x_c = x * (1 + channel)
        spatial = F.relu(self.own_spatial(x_c)) * F.relu(self.other_spatial(summary))  # (S, N, D/2)
        return channel, self.spatial_logit(spatial)  # (S, 1, D), (S, N, 1)


class GuidedTemporalAttention(nn.Module):
    """Attention over the T segments of a clip, guided by the other modality (our design for the temporal
    attention the paper's figure draws inside the adapter; the official code has it after the backbone).

    Per segment t: z_t = mean over tokens of X_t, a_t = the other modality's aligned summary. The query comes
    from the other modality, the keys and values from this one, so sound picks the frames (and frames the
    sounds) that matter across time:
      u_t = Σ_τ softmax_τ((W_q·a_t)·(W_k·z_τ) / √r) · z_τ,    X_t ← X_t + g · u_t   (broadcast over tokens).
    W_q, W_k: D → r = D/8; g a scalar gate initialised to 0, so X is unchanged at initialisation.
    """

    def __init__(self, dim: int, num_frames: int):
        super().__init__()
        self.num_frames = num_frames
        width = max(1, round(dim * TEMPORAL_RATIO))
        self.query = nn.Linear(dim, width)
        self.key = nn.Linear(dim, width)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        """x (B·T, N, D), summary (B·T, 1, D) → (B·T, N, D)."""
        t = self.num_frames
        own = x.mean(1).view(-1, t, x.shape[-1])  # (B, T, D)
        query, key = self.query(summary.view(-1, t, x.shape[-1])), self.key(own)  # (B, T, r)
        weights = (query @ key.transpose(1, 2) / math.sqrt(query.shape[-1])).softmax(-1)  # (B, T, T)
        context = (weights @ own).reshape(-1, 1, x.shape[-1])  # (B*T, 1, D)
        return x + self.gate.to(x.dtype) * context


class DGSCTAdapter(nn.Module):
    """One DG-SCT adapter of this modality's tokens X (N × D), given the other modality's tokens Y (N_o × D_o).

      Ŷ = align(Y)                                   (S, N, D)
      X̃ = X + g_av·softmax(X·L̃ᵀ)·L̃                  LAVISH latent exchange with Ŷ, g_av = 0 at init
      c, s = guidance(X̃, a = mean_N Ŷ)
      X̃ ← X̃ ⊙ (α·c + β·σ(s) + 1 − α)                re-weighting
      [X̃ ← guided temporal attention(X̃, a)]         ``temporal="adapter"`` only
      out = g · LN(z)   or, ``gate_before_norm``, LN(g · z),   z = up(ReLU(down([LN](X̃))))
      P = softmax_N(tanh s)

    The re-weighting applies to the adapter's own input copy X̃, never to the residual stream: its factor is not
    1 at initialisation (≈ 1 − α + α·c + β/2), but only ``out`` — zero while the output gate g is 0, in either
    layout — is added to the stream, so the encoders start exactly as the frozen ones. An ungated adapter
    (``gated=False``: DG-SCT's audio adapters on AVQA and AVS) adds LN(z) from the start. P is a distribution
    over this modality's tokens that pools the final tokens into the per-segment vector.
    """

    def __init__(self, own: TokenLayout, other: TokenLayout, config: DGSCTConfig, num_frames: int,
                 gated: bool = True):
        super().__init__()
        alignment = TokenAxisAlignment if config.alignment == "conv" else GridResizeAlignment
        self.alignment = alignment(other, own)
        self.fusion = LatentTokenFusion(own.dim, config.num_latent_tokens, config.latent_init)
        self.guidance = DualGuidance(own.dim) if config.guidance else None
        self.temporal = GuidedTemporalAttention(own.dim, num_frames) if config.temporal == "adapter" else None
        hidden = max(1, round(config.ratio * own.dim))
        self.bottleneck = GroupedBottleneck(own.dim, hidden, config.conv_groups, config.batch_norm,
                                            norm_before=config.norm_before)
        self.gate = nn.Parameter(torch.zeros(1)) if gated else None
        self.gate_before_norm = config.gate_before_norm
        self.alpha, self.beta = config.alpha, config.beta

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (S, N, D), other (S, N_o, D_o) of the same segments → (added beside the frozen branch (S, N, D),
        pooling map P (S, N), None without guidance)."""
        aligned = self.alignment(other)  # (S, N, D)
        x = self.fusion(x, aligned)
        summary = aligned.mean(1, keepdim=True)  # (S, 1, D)
        pooling = None
        if self.guidance is not None:
            channel, spatial = self.guidance(x, summary)  # (S, 1, D), (S, N, 1)
            x = x * (self.alpha * channel + self.beta * torch.sigmoid(spatial) + 1 - self.alpha)
            pooling = torch.tanh(spatial.squeeze(-1)).softmax(-1)  # (S, N)
        if self.temporal is not None:
            x = self.temporal(x, summary)
        return self.gated_bottleneck(x), pooling

    def gated_bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N, D) → (S, N, D): the bottleneck with the output gate where the preset puts it (if any)."""
        if self.gate is None:
            return self.bottleneck(x)
        gate = self.gate.to(x.dtype)
        if self.gate_before_norm:
            return self.bottleneck.norm_after(gate * self.bottleneck.project(x))
        return gate * self.bottleneck(x)

    def parameter_roles(self) -> dict[str, int]:
        """Parameter counts by kind (``parameter_report``'s DG-SCT breakdown)."""
        def count(module: nn.Module | None) -> int:
            return sum(p.numel() for p in module.parameters()) if module is not None else 0

        return {
            "token-axis convs": count(self.alignment.token_mixing),
            "cross-modal linears": count(self.alignment.projection),
            "guidance linears": count(self.guidance),
            "LAVISH latent exchange": count(self.fusion),
            "LAVISH bottleneck": count(self.bottleneck),
            "LAVISH output gates": self.gate.numel() if self.gate is not None else 0,
            "temporal attention": count(self.temporal),
        }


class DGSCTBlock(nn.Module):
    """A visual block and its paired audio block with four DG-SCT adapters (audio and visual, p1 and p2).

      p1 = adapters₁(v, a), both from the states entering the block;
      v ← v + attention_branch(v) + p1_v;      a ← audio_block(a) + p1_a   (the whole frozen audio block);
      p2 = adapters₂(v, a) from the updated states;
      v ← v + mlp_branch(v) + p2_v;            a ← a + p2_a.
    The branches are the frozen block's own (``norm1(attn(x))`` on res-post-norm Swin-V2), so with the output
    gates at 0 (and gated audio adapters) the block is the two frozen blocks. The frozen branches are never
    dropped (the reference's DP is timm's stochastic depth of the frozen Swin-V2; here the backbone is in eval
    behaviour throughout). The pooling maps are those of the p2 adapters.
    """

    def __init__(self, visual_handle, audio_handle, visual: TokenLayout, audio: TokenLayout, config: DGSCTConfig,
                 num_frames: int):
        super().__init__()
        self.visual_handle, self.audio_handle = visual_handle, audio_handle

        def adapters() -> nn.ModuleDict:
            return nn.ModuleDict({"video": DGSCTAdapter(visual, audio, config, num_frames),
                                  "audio": DGSCTAdapter(audio, visual, config, num_frames, gated=config.audio_gate)})

        self.attention_adapters = adapters()
        self.ffn_adapters = adapters()

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                         torch.Tensor | None, torch.Tensor | None]:
        """video (S, N_v, D_v), audio (S, N_a, D_a) → updated video, audio, pooling maps P_v (S, N_v), P_a (S, N_a)."""
        beside_video, _ = self.attention_adapters["video"](video, audio)
        beside_audio, _ = self.attention_adapters["audio"](audio, video)
        video = video + self.visual_handle.attention(video) + beside_video
        audio = run_frozen_block(self.audio_handle, audio) + beside_audio
        beside_video, pooling_video = self.ffn_adapters["video"](video, audio)
        beside_audio, pooling_audio = self.ffn_adapters["audio"](audio, video)
        video = video + self.visual_handle.ffn(video) + beside_video
        return video, audio + beside_audio, pooling_video, pooling_audio
