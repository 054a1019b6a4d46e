"""A frozen timm VisionTransformer (ViT, CLIP ViT) seen as two token streams: video frames and spectrograms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import timm.data
import torch
import torch.nn.functional as F
from timm.layers import Attention, Mlp, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from avadapt.backbones.frozen import FrozenBackbone


@dataclass
class AudioEmbeddingConfig:
    """How a spectrogram segment becomes tokens of an RGB-pretrained ViT.

    num_mel_bins × num_frames is the spectrogram "image" (rows = mel bins, columns = time frames):
    128 × 102 for 1 s at a 10 ms shift, the ViT setting of LAVISH and STG-CMA.
    kernel_reduction: the RGB patch kernel collapsed to one input channel; STG-CMA's CLIP code sums it
    (``sum``), its Swin code and AST average it (``mean``).
    pos_embed: ``crop`` takes the centre of the pretrained position grid (STG-CMA, AST), falling back to
    bilinear interpolation when the audio grid is larger; ``interpolate`` always resamples.
    """

    num_mel_bins: int = 128
    num_frames: int = 102
    kernel_reduction: Literal["sum", "mean"] = "sum"
    pos_embed: Literal["crop", "interpolate"] = "crop"

    def __post_init__(self):
        if self.kernel_reduction not in ("sum", "mean"):
            raise ValueError(f"kernel_reduction must be 'sum' or 'mean', got {self.kernel_reduction!r}")
        if self.pos_embed not in ("crop", "interpolate"):
            raise ValueError(f"pos_embed must be 'crop' or 'interpolate', got {self.pos_embed!r}")


SHORT_SEQUENCE = 32  # tokens; below this, bf16 attention on CPU is faster as explicit matmuls


class BlockHandle:
    """The frozen parts of one timm block, for methods that call them in their own order.

    ``attention`` and ``ffn`` are the two residual branches without the residual add: methods decide what
    to add where. ``block`` stays reachable for methods that need the attention's projections.

    For timm's plain ``Attention`` and ``Mlp`` the two branches are computed here from the block's own
    weights (the only place avadapt depends on their internals; ``tests/test_backbone.py`` checks the
    result against the timm block), because a frozen backbone allows three things timm cannot know:
    under autocast the frozen weights are cast to the compute dtype once and cached (autocast re-casts
    tensors that do not require grad at every call, and keeps each copy alive for backward); under
    bf16 the attention uses explicit matmuls, several times faster than the CPU flash kernel's backward
    for the short sequences of temporal attention; and the FFN's hidden activation, the largest tensor
    of a block, can be recomputed in backward instead of stored (``recompute_ffn``).
    """

    def __init__(self, block: nn.Module):
        self.block = block
        self.num_heads: int = block.attn.num_heads
        self.own_kernels = (type(block.attn) is Attention and type(block.mlp) is Mlp
                            and getattr(block.attn, "gate", None) is None)
        self.recompute_ffn = False
        self._cast_cache: dict[tuple[int, torch.dtype], tuple[int, torch.Tensor, torch.Tensor | None]] = {}

    def _linear(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if layer.weight.requires_grad or not torch.is_autocast_enabled(device):
            return layer(x)
        dtype = torch.get_autocast_dtype(device)
        key, version = (id(layer), dtype), layer.weight._version
        cached = self._cast_cache.get(key)
        if cached is None or cached[0] != version:
            bias = None if layer.bias is None else layer.bias.detach().to(dtype)
            cached = self._cast_cache[key] = (version, layer.weight.detach().to(dtype), bias)
        with torch.autocast(device, enabled=False):
            return F.linear(x.to(dtype), cached[1], cached[2])

    def attention(self, x: torch.Tensor, recompute: bool = False) -> torch.Tensor:
        """Frozen norm1 + self-attention (+ layer scale) over the sequences of x: (S, N, D) → (S, N, D).

        recompute: keep only x for backward and recompute the attention there (its q, k, v and output are
        four times the size of x).
        """
        if recompute and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(self._attention, x, use_reentrant=False)
        return self._attention(x)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        block = self.block
        if not self.own_kernels:
            return block.ls1(block.attn(block.norm1(x)))
        attn = block.attn
        s, n, _ = x.shape
        qkv = self._linear(attn.qkv, block.norm1(x)).view(s, n, 3, attn.num_heads, attn.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (S, H, N, d)
        q, k = attn.q_norm(q), attn.k_norm(k)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and n <= SHORT_SEQUENCE:
            # scores scaled in place: autograd keeps q and k (views of qkv) and the bf16 softmax, nothing more
            weights = (q @ k.transpose(-2, -1)).mul_(attn.scale).softmax(dim=-1)  # (S, H, N, N)
            out = weights @ v  # (S, H, N, d)
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        out = attn.norm(out.transpose(1, 2).reshape(s, n, attn.attn_dim))
        return block.ls1(attn.proj_drop(self._linear(attn.proj, out)))

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen norm2 + MLP (+ layer scale): (S, N, D) → (S, N, D)."""
        if self.recompute_ffn and torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(self._ffn, x, use_reentrant=False)
        return self._ffn(x)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        block = self.block
        if not self.own_kernels:
            return block.ls2(block.mlp(block.norm2(x)))
        mlp = block.mlp
        hidden = mlp.norm(mlp.drop1(mlp.act(self._linear(mlp.fc1, block.norm2(x)))))
        return block.ls2(mlp.drop2(self._linear(mlp.fc2, hidden)))


class ViTBackbone(FrozenBackbone):
    """A timm VisionTransformer, frozen, with a video and an audio entrance sharing all its weights.

    The audio entrance is derived from the frozen video weights each call (kernel collapse and position
    grid fit are cheap), so it can never go stale when backbone weights are loaded later.
    Frozen means ``requires_grad=False`` and eval mode whatever ``.train()`` is called with, unless
    ``set_trainable(True)`` is asked for (full fine-tuning reference).
    """

    family = "vit"

    def __init__(self, model: VisionTransformer, name: str, audio: AudioEmbeddingConfig | None = None):
        if not isinstance(model, VisionTransformer):
            raise TypeError(f"{name}: expected a timm VisionTransformer, got {type(model).__name__}")
        if model.num_prefix_tokens != 1 or model.cls_token is None or model.no_embed_class:
            raise ValueError(f"{name}: only ViTs with one class token and a class position are supported")
        super().__init__(model, name)
        self.audio = audio or AudioEmbeddingConfig()
        self.embed_dim: int = model.embed_dim
        self.patch_size: tuple[int, int] = tuple(model.patch_embed.patch_size)
        self.video_grid: tuple[int, int] = tuple(model.patch_embed.grid_size)
        self.audio_grid: tuple[int, int] = (
            self.audio.num_mel_bins // self.patch_size[0],
            self.audio.num_frames // self.patch_size[1],
        )
        if min(self.audio_grid) < 1:
            raise ValueError(f"{name}: a {self.audio.num_mel_bins}×{self.audio.num_frames} spectrogram is "
                             f"smaller than one {self.patch_size} patch")
        self.blocks = [BlockHandle(block) for block in model.blocks]
        # timm resolves the data config from the pretrained cfg, which ignores an img_size override
        self.data_config = timm.data.resolve_data_config(model=model)
        self.data_config["input_size"] = (3, *model.patch_embed.img_size)
        self.set_trainable(False)

    def pre_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.norm_pre(tokens)

    def video_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """(S, 3, H, W) frames → (S, 1 + N, D) class + patch tokens with positions, before the pre-norm."""
        x = self.model.patch_embed(frames)  # (S, N, D)
        return self.model.patch_drop(self.model._pos_embed(x))

    def audio_tokens(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """(S, 1, F, L) spectrograms → (S, 1 + F/p · L/p, D), before the pre-norm.

        Orientation: rows are mel bins and columns are time frames, in the input, in the token grid and in
        the position grid we fit, so a token's position embedding comes from the same (row, column) place
        of the pretrained grid. The official STG-CMA code feeds (time × freq) images but crops the position
        grid as (freq × time): the token count agrees, the geometry is transposed. We do not reproduce that.
        """
        if spectrograms.shape[-2:] != (self.audio.num_mel_bins, self.audio.num_frames):
            raise ValueError(
                f"audio segments must be {self.audio.num_mel_bins} mel bins × {self.audio.num_frames} frames "
                f"for this backbone, got {tuple(spectrograms.shape[-2:])}"
            )
        proj = self.model.patch_embed.proj
        weight = proj.weight.sum(1, keepdim=True) if self.audio.kernel_reduction == "sum" else (
            proj.weight.mean(1, keepdim=True))  # (D, 1, p, p)
        x = F.conv2d(spectrograms, weight, proj.bias, stride=proj.stride)  # (S, D, F/p, L/p)
        x = self.model.patch_embed.norm(x.flatten(2).transpose(1, 2))  # (S, N_a, D)
        cls = self.model.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.audio_position_embedding()

    def audio_position_embedding(self) -> torch.Tensor:
        """(1, 1 + N_a, D): the class position, then the pretrained grid fitted to the audio grid."""
        pos = self.model.pos_embed
        cls_pos, grid = pos[:, :1], pos[:, 1:]
        rows, cols = self.video_grid
        want_rows, want_cols = self.audio_grid
        if self.audio.pos_embed == "crop" and want_rows <= rows and want_cols <= cols:
            top, left = (rows - want_rows) // 2, (cols - want_cols) // 2
            grid = grid.reshape(1, rows, cols, -1)[:, top:top + want_rows, left:left + want_cols]
            grid = grid.reshape(1, want_rows * want_cols, -1)
        else:
            grid = resample_abs_pos_embed(grid, new_size=[want_rows, want_cols], old_size=[rows, cols],
                                          num_prefix_tokens=0, interpolation="bilinear", antialias=False)
        return torch.cat([cls_pos, grid], dim=1)
