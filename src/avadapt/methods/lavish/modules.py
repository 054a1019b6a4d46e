"""The LAVISH adapter: latent-token cross-modal fusion, then a gated grouped-convolution bottleneck."""

from __future__ import annotations

import torch
from torch import nn

from avadapt.backbones import Backbone
from avadapt.layers import StochasticDepth, parameter_free_cross_attention
from avadapt.methods.lavish.config import LAVISHConfig

OTHER_MODALITY = {"video": "audio", "audio": "video"}


class LatentTokenFusion(nn.Module):
    """Cross-modal fusion through m latent tokens (LAVISH Eq. 6–7), without projections or 1/√d scaling.

    L̃ = L + softmax(L·Yᵀ)·Y compresses the other modality's tokens Y into m tokens;
    X̃ = X + g_av·softmax(X·L̃ᵀ)·L̃ lets this modality's tokens X read them. The scalar gate g_av starts at
    0, so at initialisation X̃ = X.
    """

    def __init__(self, dim: int, num_tokens: int, init: str):
        super().__init__()
        self.latent_tokens = nn.Parameter(torch.rand(num_tokens, dim) if init == "uniform" else torch.zeros(num_tokens, dim))
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """x (S, N, D), other (S, N_o, D) of the same segment → (S, N, D)."""
        latent = self.latent_tokens.to(x.dtype).expand(x.shape[0], -1, -1)  # (S, m, D)
        latent = latent + parameter_free_cross_attention(latent, other)  # (S, m, D)
        return x + self.gate.to(x.dtype) * parameter_free_cross_attention(x, latent)


class GroupedBottleneck(nn.Module):
    """[LN] → 1×1 conv D→r (grouped, no bias) → [BN] → ReLU → 1×1 conv r→D (grouped, no bias) → [BN] → LN.

    A 1×1 convolution over tokens is a per-token linear map; grouping makes it block-diagonal. BatchNorm
    normalises each channel over all B·T·N token positions of the batch (BatchNorm2d over a 1-pixel-high
    image in the official code, BatchNorm1d over (S, C, N) here: the same statistics). ``norm_before=False``
    drops the first LayerNorm (DG-SCT's AVS adapters); :meth:`project` is everything before the closing one, for
    an adapter that gates in between.
    """

    def __init__(self, dim: int, hidden: int, groups: int, batch_norm: bool, norm_before: bool = True):
        super().__init__()
        if dim % groups or hidden % groups:
            raise ValueError(f"LAVISH bottleneck: width {dim} and hidden width {hidden} must both be divisible by "
                             f"{groups} convolution groups")
        self.norm_before = nn.LayerNorm(dim) if norm_before else nn.Identity()
        self.down = nn.Conv1d(dim, hidden, kernel_size=1, groups=groups, bias=False)
        self.down_norm = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        self.act = nn.ReLU()
        self.up = nn.Conv1d(hidden, dim, kernel_size=1, groups=groups, bias=False)
        self.up_norm = nn.BatchNorm1d(dim) if batch_norm else nn.Identity()
        self.norm_after = nn.LayerNorm(dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N, D) → (S, N, D): the bottleneck without its closing LayerNorm."""
        h = self.norm_before(x).transpose(1, 2)  # (S, D, N)
        h = self.act(self.down_norm(self.down(h)))  # (S, r, N)
        return self.up_norm(self.up(h)).transpose(1, 2)  # (S, N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_after(self.project(x))


class LAVISHAdapter(nn.Module):
    """One LAVISH adapter (``VisualAdapter`` of the official code): fusion, bottleneck, output gate.

    Returns the quantity added beside the frozen branch, ``g · bottleneck(fusion(X, Y))``; the zero-initialised
    scalar g makes it 0 at initialisation whatever BatchNorm does (train or eval mode). Without a gate
    (``audio_gate=False`` for audio adapters) the output is the bottleneck's, and not 0.
    """

    def __init__(self, dim: int, config: LAVISHConfig, fuse: bool, gated: bool):
        super().__init__()
        self.fusion = LatentTokenFusion(dim, config.num_latent_tokens, config.latent_init) if fuse else None
        hidden = max(1, round(config.ratio * dim))
        self.bottleneck = GroupedBottleneck(dim, hidden, config.conv_groups, config.batch_norm)
        self.gate = nn.Parameter(torch.zeros(1)) if gated else None

    def forward(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        if self.fusion is not None and other is not None:
            x = self.fusion(x, other)
        out = self.bottleneck(x)
        return out if self.gate is None else self.gate.to(out.dtype) * out


class LAVISHBlock(nn.Module):
    """Four adapters around one frozen block: audio and video, beside the attention and beside the MLP.

    Parallel insertion as in the official Swin-V2 code (res-post-norm):
      p1 = adapters₁(x, other modality's x), both from the states entering the block;
      x ← x + DP(attention_branch(x)) + p1;
      p2 = adapters₂(x, other) from the updated states of both modalities;
      x ← x + DP(mlp_branch(x)) + p2.
    The branches are the frozen block's own (``norm1(attn(x))`` on Swin-V2, ``attn(norm1(x))`` on pre-norm
    ViT and Swin v1), so the block reduces to the frozen one while the gates are 0 (in eval mode, or with
    ``backbone_drop_path=0``). DP is the frozen backbone's own stochastic depth, per frame, at this block's
    ``drop_path`` rate.
    """

    def __init__(self, handle, dim: int, modalities: tuple[str, ...], config: LAVISHConfig, drop_path: float = 0.0):
        super().__init__()
        self.handle = handle
        self.stochastic_depth = StochasticDepth(drop_path)
        fuse = config.cross_modal_fusion and len(modalities) == 2

        def adapters() -> nn.ModuleDict:
            return nn.ModuleDict({
                m: LAVISHAdapter(dim, config, fuse, gated=(m == "video" or config.audio_gate)) for m in modalities})

        self.attention_adapters = adapters()
        self.ffn_adapters = adapters()

    def _beside(self, adapters: nn.ModuleDict, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: adapters[m](x, tokens.get(OTHER_MODALITY[m])) for m, x in tokens.items()}

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        beside = self._beside(self.attention_adapters, tokens)
        tokens = {m: self.stochastic_depth(x, self.handle.attention(x)) + beside[m] for m, x in tokens.items()}
        beside = self._beside(self.ffn_adapters, tokens)
        return {m: self.stochastic_depth(x, self.handle.ffn(x)) + beside[m] for m, x in tokens.items()}


def backbone_layer_norms(backbone: Backbone) -> list[nn.LayerNorm]:
    """Every LayerNorm of the timm model (blocks, patch embedding and merging, final norm), found by type."""
    return [module for module in backbone.model.modules() if isinstance(module, nn.LayerNorm)]
