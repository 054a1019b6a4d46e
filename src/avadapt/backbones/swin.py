"""A frozen timm Swin Transformer (v1 or v2) seen as two token streams: video frames and spectrograms.

This is the one file of avadapt that relies on private details of timm's Swin code: the blocks' ``_attn``
(cyclic shift → pad → window partition → masked window attention → reverse), their ``shift_size`` /
``window_size`` / ``input_resolution`` attributes, and the projections inside ``WindowAttention``
(``qkv``, ``scale`` for v1; ``q_bias``/``k_bias``/``v_bias``, ``logit_scale`` for v2's cosine attention).
``tests/test_swin_internals.py`` checks every one of them against timm's own forward, so a timm release
that changes them fails loudly there instead of silently changing what a method computes.

Token layout: methods see tokens as ``(S, N, C)`` sequences, N = H·W in row-major order (timm's NHWC
flattened); the handles reshape to ``(S, H, W, C)`` with the grid they know. A stage starts with patch
merging (timm puts it at the start of stages 2…4), which halves the grid and doubles the width.
"""

from __future__ import annotations

import math

import timm.data
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from torch import nn
from torch.utils.checkpoint import checkpoint

from avadapt.backbones.frozen import FrozenBackbone
from avadapt.backbones.vit import AudioEmbeddingConfig
from avadapt.kernels import should_recompute

SWIN_MODEL_TYPES = (SwinTransformer, SwinTransformerV2)


class SwinBlockHandle:
    """The frozen parts of one timm Swin block, for methods that call them in their own order.

    ``attention`` and ``ffn`` are the two residual branches without the residual add, exactly as the block
    computes them: v1 is pre-norm (``attn(norm1(x))``, ``mlp(norm2(x))``), v2 is res-post-norm
    (``norm1(attn(x))``, ``norm2(mlp(x))``). ``attention`` is the shifted, masked window attention of the
    block. ``windows`` / ``merge_windows`` expose the block's window layout (shift and padding included) for
    methods that pair windows across modalities; ``attention_over_time`` re-uses the frozen projections of
    the window attention along the time axis with a caller-supplied position bias.
    """

    def __init__(self, block: nn.Module, stage: int, index_in_stage: int, version: int):
        self.block = block
        self.stage = stage
        self.index_in_stage = index_in_stage
        self.version = version
        self.grid: tuple[int, int] = tuple(block.input_resolution)
        self.dim: int = block.norm1.normalized_shape[0]
        self.num_heads: int = block.attn.num_heads
        self.window_size: tuple[int, int] = tuple(block.window_size)
        self.shift_size: tuple[int, int] = tuple(block.shift_size)
        self.recompute_ffn = False

    @property
    def shifted_by_design(self) -> bool:
        """Odd blocks of a stage are the shifted-window ones in Swin's layout.

        When a stage's grid is no larger than the window (Swin-L/224's last stage: 7² grid, window 7)
        timm, like the original code, turns the shift off, so ``shift_size`` is 0 there even for odd blocks.
        Methods that follow the papers' "even blocks" rule use this flag rather than ``shift_size``.
        """
        return self.index_in_stage % 2 == 1

    def _as_grid(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.grid
        if x.shape[1] != height * width:
            raise ValueError(f"stage {self.stage} expects {height}×{width} = {height * width} tokens, got {x.shape[1]}")
        return x.view(x.shape[0], height, width, x.shape[2])  # (S, H, W, C)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N, C) → (S, N, C): the block's (shifted) window-attention branch, before the residual add."""
        grid = self._as_grid(x)
        if self.version == 1:
            out = self.block._attn(self.block.norm1(grid))
        else:
            out = self.block.norm1(self.block._attn(grid))
        return out.reshape(x.shape)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N, C) → (S, N, C): the MLP branch, before the residual add."""
        if should_recompute(self.recompute_ffn, x):
            return checkpoint(self._ffn, x, use_reentrant=False)
        return self._ffn(x)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        if self.version == 1:
            return self.block.mlp(self.block.norm2(x))
        return self.block.norm2(self.block.mlp(x))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N, C) → (S, N, C): the unmodified timm block (its own drop path when it trains)."""
        return self.block(self._as_grid(x)).reshape(x.shape)

    def _padding(self) -> tuple[int, int]:
        (height, width), (win_h, win_w) = self.grid, self.window_size
        return (win_h - height % win_h) % win_h, (win_w - width % win_w) % win_w

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N, C) → (S·nW, window area, C), windows in the order the block's attention sees them.

        Same steps as timm's ``_attn``: cyclic shift by ``-shift_size``, zero padding to whole windows,
        partition row-major over windows. Works for any channel count (e.g. compressed adapter tokens).
        """
        grid = self._as_grid(x)
        if any(self.shift_size):
            grid = torch.roll(grid, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        pad_h, pad_w = self._padding()
        grid = F.pad(grid, (0, 0, 0, pad_w, 0, pad_h))
        s, height, width, c = grid.shape
        win_h, win_w = self.window_size
        grid = grid.view(s, height // win_h, win_h, width // win_w, win_w, c)
        return grid.permute(0, 1, 3, 2, 4, 5).reshape(-1, win_h * win_w, c)  # (S*nW, Wh*Ww, C)

    def merge_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`windows`: (S·nW, window area, C) → (S, N, C)."""
        (height, width), (win_h, win_w) = self.grid, self.window_size
        pad_h, pad_w = self._padding()
        rows, cols = (height + pad_h) // win_h, (width + pad_w) // win_w
        c = windows.shape[-1]
        grid = windows.view(-1, rows, cols, win_h, win_w, c).permute(0, 1, 3, 2, 4, 5)
        grid = grid.reshape(-1, rows * win_h, cols * win_w, c)[:, :height, :width]  # (S, H, W, C)
        if any(self.shift_size):
            grid = torch.roll(grid, shifts=self.shift_size, dims=(1, 2))
        return grid.reshape(-1, height * width, c)

    def _attention_core(self, seq: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The frozen window-attention projections over any (M, L, C) sequences, with ``bias`` (1|M, heads, L, L)."""
        attn = self.block.attn
        m, length, _ = seq.shape
        if self.version == 1 or attn.q_bias is None:
            qkv = attn.qkv(seq)
        else:
            qkv_bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
            qkv = attn.qkv(seq) + qkv_bias if attn.qkv_bias_separate else F.linear(seq, attn.qkv.weight, qkv_bias)
        q, k, v = qkv.reshape(m, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # (M, h, L, d)
        bias = bias.to(q.dtype)
        if self.version == 1:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attn.scale)
        else:  # cosine attention with a learnt, clamped temperature per head
            logit_scale = torch.clamp(attn.logit_scale, max=math.log(1.0 / 0.01)).exp()  # (h, 1, 1)
            q, k = F.normalize(q, dim=-1) * logit_scale.to(q.dtype), F.normalize(k, dim=-1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        return attn.proj(out.transpose(1, 2).reshape(m, length, -1))  # (M, L, C)

    def attention_over_time(self, seq: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """(B·N, T, C) → (B·N, T, C): the block's attention branch run along time with a temporal bias.

        The frozen norm and projections are those of the window attention (pre-norm for v1, post-norm for
        v2, as in :meth:`attention`); only the position bias is the caller's, since the window's relative
        position table indexes 2-D offsets inside a window, not time steps.
        """
        if self.version == 1:
            return self._attention_core(self.block.norm1(seq), bias)
        return self.block.norm1(self._attention_core(seq, bias))


class SwinStageHandle:
    """One Swin stage: the patch merging that opens it (none for the first stage) and its blocks."""

    def __init__(self, stage: nn.Module, index: int, input_grid: tuple[int, int], version: int):
        self.stage = stage
        self.index = index
        self.input_grid = input_grid
        self.grid: tuple[int, int] = tuple(stage.output_resolution)
        self.blocks = [SwinBlockHandle(block, index, i, version) for i, block in enumerate(stage.blocks)]
        self.dim: int = self.blocks[0].dim
        self.has_downsample = not isinstance(stage.downsample, nn.Identity)

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N_in, C_in) → (S, N, C): frozen patch merging (2×2 neighbours, LayerNorm, Linear)."""
        if not self.has_downsample:
            return x
        height, width = self.input_grid
        out = self.stage.downsample(x.view(x.shape[0], height, width, x.shape[2]))  # (S, H/2, W/2, 2C)
        return out.flatten(1, 2)


class SwinBackbone(FrozenBackbone):
    """A timm Swin Transformer (v1 or v2), frozen, with a video and an audio entrance sharing all weights.

    The audio entrance feeds a one-channel spectrogram "image" through the RGB patch embedding with its
    kernel collapsed to one channel (``mean``: STG-CMA's Swin code; ``sum``: identical to tiling the
    spectrogram to three channels and using the RGB kernel unchanged, LAVISH), followed by the frozen
    patch norm. Swin has no absolute position embedding to fit; instead its window layout and attention
    masks are built for one token grid, so the spectrogram must have the image's size (224 mel × 224 frames
    for Swin/224, 192 × 192 for Swin-V2/192), as in both official codes.

    ``embed_dim`` is the width of the tokens handed to heads (the last stage); ``stage_dims`` lists all.
    Frozen means ``requires_grad=False`` and eval mode whatever ``.train()`` is called with, unless
    ``set_trainable(True)`` is asked for (full fine-tuning reference).
    """

    family = "swin"

    def __init__(self, model: nn.Module, name: str, audio: AudioEmbeddingConfig | None = None):
        if not isinstance(model, SWIN_MODEL_TYPES):
            raise TypeError(f"{name}: expected a timm SwinTransformer or SwinTransformerV2, got {type(model).__name__}")
        super().__init__(model, name)
        self.version = 2 if isinstance(model, SwinTransformerV2) else 1
        self.patch_size: tuple[int, int] = tuple(model.patch_embed.patch_size)
        self.image_size: tuple[int, int] = tuple(model.patch_embed.img_size)
        self.video_grid: tuple[int, int] = tuple(model.patch_embed.grid_size)
        self.stages: list[SwinStageHandle] = []
        grid = self.video_grid
        for index, stage in enumerate(model.layers):
            self.stages.append(SwinStageHandle(stage, index, grid, self.version))
            grid = self.stages[-1].grid
        self.blocks = [handle for stage in self.stages for handle in stage.blocks]
        self.stage_dims: list[int] = [stage.dim for stage in self.stages]
        self.embed_dim: int = model.num_features
        # The pretrained config's input size ignores an ``img_size`` given to timm; the patch embedding knows it.
        self.data_config = timm.data.resolve_data_config({"input_size": (3, *self.image_size)}, model=model)
        self.audio = audio or AudioEmbeddingConfig(
            num_mel_bins=self.image_size[0], num_frames=self.image_size[1], kernel_reduction="mean")
        self.set_trainable(False)

    @property
    def audio(self) -> AudioEmbeddingConfig:
        return self._audio

    @audio.setter
    def audio(self, config: AudioEmbeddingConfig) -> None:
        if (config.num_mel_bins, config.num_frames) != self.image_size:
            raise ValueError(
                f"{self.name}: Swin windows and masks are built for a {self.image_size[0]}×{self.image_size[1]} "
                f"input, so spectrograms must be {self.image_size[0]} mel bins × {self.image_size[1]} frames, "
                f"got {config.num_mel_bins}×{config.num_frames}")
        self._audio = config

    @property
    def audio_grid(self) -> tuple[int, int]:
        return self.video_grid

    def pre_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """Swin normalises inside its patch embedding; there is no separate pre-norm."""
        return tokens

    def video_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """(S, 3, H, W) frames → (S, N, C) normed patch tokens of the first stage."""
        return self.model.patch_embed(frames).flatten(1, 2)  # (S, H/p * W/p, C)

    def audio_tokens(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """(S, 1, F, L) spectrograms → (S, N, C), rows = mel bins and columns = frames, as for video rows/columns.

        The official LAVISH and STG-CMA Swin codes feed (frames × mel) images: same token grid and windows, but
        the pretrained relative position bias sees time offsets where this orientation has frequency offsets.
        """
        if spectrograms.shape[-2:] != (self.audio.num_mel_bins, self.audio.num_frames):
            raise ValueError(
                f"audio segments must be {self.audio.num_mel_bins} mel bins × {self.audio.num_frames} frames "
                f"for this backbone, got {tuple(spectrograms.shape[-2:])}")
        proj = self.model.patch_embed.proj
        weight = proj.weight.sum(1, keepdim=True) if self.audio.kernel_reduction == "sum" else (
            proj.weight.mean(1, keepdim=True))  # (C, 1, p, p)
        x = F.conv2d(spectrograms, weight, proj.bias, stride=proj.stride)  # (S, C, F/p, L/p)
        x = self.model.patch_embed.norm(x.permute(0, 2, 3, 1))  # (S, F/p, L/p, C)
        return x.flatten(1, 2)
