"""A frozen timm VisionTransformer (ViT, CLIP ViT) seen as two token streams: video frames and spectrograms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import timm.data
import torch
import torch.nn.functional as F
from timm.layers import Attention, Mlp, QuickGELU, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from avadapt import kernels
from avadapt.backbones.frozen import FrozenBackbone


@dataclass
class AudioEmbeddingConfig:
    """How a spectrogram segment becomes tokens of an RGB-pretrained ViT.

    num_mel_bins × num_frames is the spectrogram "image" (rows = mel bins, columns = time frames):
    128 × 102 for 1 s at a 10 ms shift, the ViT setting of LAVISH and STG-CMA.
    kernel_reduction: the RGB patch kernel collapsed to one input channel; STG-CMA's CLIP code sums it
    (``sum``), its Swin code and AST average it (``mean``).
    pos_embed: ``crop`` takes the centre of the pretrained position grid (STG-CMA, AST), falling back to
    bilinear interpolation when the audio grid is larger; ``interpolate`` always resamples. The crop starts
    where the reference's does, at ``size // 2 − want // 2`` (row 4, column 5 for ViT-L/14's 9 × 7 audio grid
    in its 16 × 16 grid).
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


def _activation(act: nn.Module) -> str | nn.Module:
    """The FFN activation by name where the kernels differentiate it by hand (GELU exact or tanh; QuickGELU,
    OpenAI CLIP's), else the module itself."""
    if type(act) is nn.GELU:
        return act.approximate
    return "quick_gelu" if type(act) is QuickGELU else act


class BlockHandle:
    """The frozen parts of one timm block as its two residual branches, for methods that call them in their
    own order: ``attention(x)`` = ls1(attn(norm1(x))) and ``ffn(x)`` = ls2(mlp(norm2(x))), (S, N, D) → (S, N, D),
    without the residual add. ``block`` stays reachable for methods that need the attention's projections.

    timm's plain ``Attention`` and ``Mlp`` are computed by ``avadapt.kernels`` from the block's own modules
    (the only place avadapt reads their internals; ``tests/test_backbone.py`` checks the result against the
    timm block); any other block runs as timm wrote it.
    """

    def __init__(self, block: nn.Module):
        self.block = block
        attn, mlp = block.attn, block.mlp
        self.num_heads: int = attn.num_heads
        self.own_kernels = type(attn) is Attention and type(mlp) is Mlp and getattr(attn, "gate", None) is None
        if self.own_kernels:
            self.attention = kernels.FrozenSelfAttention(
                block.norm1, attn.qkv, attn.proj, attn.num_heads, attn.scale, q_norm=attn.q_norm,
                k_norm=attn.k_norm, out_norm=attn.norm, proj_drop=attn.proj_drop, layer_scale=block.ls1)
            self.ffn = kernels.FrozenMLP(block.norm2, mlp.fc1, _activation(mlp.act), mlp.fc2, drop1=mlp.drop1,
                                         hidden_norm=mlp.norm, drop2=mlp.drop2, layer_scale=block.ls2)
        else:
            self.attention = kernels.FrozenBranch(nn.Sequential(block.norm1, block.attn, block.ls1))
            self.ffn = kernels.FrozenBranch(nn.Sequential(block.norm2, block.mlp, block.ls2))

    @property
    def recompute_ffn(self) -> bool:
        """Recompute the FFN's hidden activation, the largest tensor of a block, in backward."""
        return self.ffn.recompute

    @recompute_ffn.setter
    def recompute_ffn(self, enabled: bool) -> None:
        self.ffn.recompute = enabled

    def store_frozen_weights_as(self, dtype: torch.dtype) -> int:
        """Keep this block's frozen linear layers in ``dtype`` only; returns the bytes given back."""
        return self.attention.store_frozen_weights_as(dtype) + self.ffn.store_frozen_weights_as(dtype)


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

    def store_frozen_weights_as(self, dtype: torch.dtype) -> int:
        """Keep the frozen blocks' linear weights in ``dtype`` only, e.g. bf16 for bf16-autocast training:
        fp32 copies of weights that never change and that autocast would cast anyway are dead memory
        (344 MB on ViT-B/16). Norms, embeddings and trainable weights keep their dtype. Returns bytes freed."""
        return sum(handle.store_frozen_weights_as(dtype) for handle in self.blocks)

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
            top, left = rows // 2 - want_rows // 2, cols // 2 - want_cols // 2  # the reference's centre
            grid = grid.reshape(1, rows, cols, -1)[:, top:top + want_rows, left:left + want_cols]
            grid = grid.reshape(1, want_rows * want_cols, -1)
        else:
            grid = resample_abs_pos_embed(grid, new_size=[want_rows, want_cols], old_size=[rows, cols],
                                          num_prefix_tokens=0, interpolation="bilinear", antialias=False)
        return torch.cat([cls_pos, grid], dim=1)
