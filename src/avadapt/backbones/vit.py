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
from torch.utils.checkpoint import checkpoint

from avadapt.backbones.frozen import FrozenBackbone, should_recompute
from avadapt.layers.attention import at_least_fp32, packed_self_attention, scaled_dot_product_attention
from avadapt.layers.linear import frozen_linear


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


SHORT_SEQUENCE = 32  # tokens; up to this (temporal attention), the N × N softmax is kept for backward


def _short_attention(qkv: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """qkv (S, N, 3, H, d) → (q, k, v as one (3, S·H, N, d) tensor, softmax (S·H, N, N) in qkv's dtype,
    output (S, N, H·d)); softmax in ≥ fp32.

    One copy puts q, k and v head-first, so every batched matmul here and in backward reads them as they lie.
    """
    s, n, _, heads, head_dim = qkv.shape
    q, k, v = heads_first = qkv.permute(2, 0, 3, 1, 4).reshape(3, s * heads, n, head_dim)
    probs = _softmax_of_short_rows_(at_least_fp32(torch.bmm(q, k.transpose(1, 2))).mul_(scale)).to(qkv.dtype)
    return heads_first, probs, _heads_last(torch.bmm(probs, v), s)


def _softmax_of_short_rows_(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension, in place, as four whole-tensor ops: PyTorch's CPU softmax kernel is
    slow on rows as short as a temporal attention's (10 frames); forward + backward of one ViT-B/16 temporal
    call took 0.90× the time in bf16 and 0.88× in fp32 this way."""
    scores.sub_(scores.amax(-1, keepdim=True)).exp_()
    return scores.div_(scores.sum(-1, keepdim=True))


def _heads_last(per_head: torch.Tensor, s: int) -> torch.Tensor:
    """(S·H, N, d) → (S, N, H·d)."""
    _, n, head_dim = per_head.shape
    return per_head.view(s, -1, n, head_dim).transpose(1, 2).reshape(s, n, -1)


class _ShortAttentionThenLinear(torch.autograd.Function):
    """``linear(attention(q, k, v), W, b)`` for short sequences, storing q, k, v (head-first) and the softmax.

    The attention output u (S, N, D) is what a linear layer after it would store; here it is recomputed in
    backward from the stored softmax and v (2·N·D FLOPs per sequence, nothing for N ≈ 10) and never kept.
    Everything runs in qkv's dtype; the caller disables autocast.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
        heads_first, probs, u = _short_attention(qkv, scale)
        ctx.save_for_backward(heads_first, probs, weight)
        ctx.scale, ctx.qkv_shape = scale, qkv.shape
        return F.linear(u, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        heads_first, probs, weight = ctx.saved_tensors
        q, k, v = heads_first
        s, n, _, heads, head_dim = ctx.qkv_shape
        grad_out = grad_out.to(heads_first.dtype)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            u = _heads_last(torch.bmm(probs, v), s)
            grad_weight = grad_out.flatten(0, -2).T @ u.flatten(0, -2)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_out.flatten(0, -2).sum(0)
        grad_qkv = None
        if ctx.needs_input_grad[0]:
            grad_u = (grad_out @ weight).view(s, n, heads, head_dim).transpose(1, 2).reshape(s * heads, n, head_dim)
            grad_probs = at_least_fp32(torch.bmm(grad_u, v.transpose(1, 2)))
            p = at_least_fp32(probs)
            grad_scores = (p * (grad_probs - (grad_probs * p).sum(-1, keepdim=True))).mul_(ctx.scale).to(q.dtype)
            grad_heads_first = torch.empty_like(heads_first)  # (3, S·H, N, d)
            torch.bmm(grad_scores, k, out=grad_heads_first[0])
            torch.bmm(grad_scores.transpose(1, 2), q, out=grad_heads_first[1])
            torch.bmm(probs.transpose(1, 2), grad_u, out=grad_heads_first[2])
            grad_qkv = grad_heads_first.view(3, s, heads, n, head_dim).permute(1, 3, 0, 2, 4).contiguous()
        return grad_qkv, grad_weight, grad_bias, None


def _activation_kind(act: nn.Module) -> str | None:
    """The FFN activations ``_ActivationThenTwoLinears`` differentiates by hand: GELU (exact or tanh, ViT)
    and QuickGELU (OpenAI CLIP weights); None for any other."""
    if type(act) is nn.GELU:
        return act.approximate
    return "quick_gelu" if type(act) is QuickGELU else None


def _activate(h: torch.Tensor, kind: str) -> torch.Tensor:
    return h * torch.sigmoid(1.702 * h) if kind == "quick_gelu" else F.gelu(h, approximate=kind)


def _activation_backward_(grad: torch.Tensor, h: torch.Tensor, kind: str) -> torch.Tensor:
    """grad · act'(h), written into grad (a fresh buffer of the caller's): no second (N, 4D) tensor."""
    if kind == "quick_gelu":  # d/dh h·σ(ah) = σ(ah)·(1 + a·h·(1 − σ(ah)))
        s = (h * 1.702).sigmoid_()
        return grad.mul_(s.neg().add_(1).mul_(h).mul_(1.702).add_(1).mul_(s))
    return torch.ops.aten.gelu_backward.grad_input(grad, h, approximate=kind, grad_input=grad)


_RECOMPUTE_ROWS = 1024  # tokens; an fp32 ViT-B FFN activation of this many rows is 12 MB, a reusable heap block


class _ActivationThenTwoLinears(torch.autograd.Function):
    """``a = act(h)``; returns ``(linear(a, W, b), linear(a, W_fused, b_fused))`` with W frozen.

    Stores h only (the activation's own backward needs it): a, as large as h, is recomputed in backward,
    ``_RECOMPUTE_ROWS`` rows at a time, for the fused weight's gradient. Everything runs in h's dtype; the
    caller disables autocast.
    """

    @staticmethod
    def forward(ctx, h, kind, weight, bias, fused_weight, fused_bias):
        a = _activate(h, kind)
        ctx.save_for_backward(h, weight, fused_weight)
        ctx.kind = kind
        return frozen_linear(a, weight, bias), F.linear(a, fused_weight, fused_bias)

    @staticmethod
    def backward(ctx, grad_out, grad_fused):
        h, weight, fused_weight = ctx.saved_tensors
        grad_fused = grad_fused.to(h.dtype)
        if grad_out is None:
            grad_a = grad_fused @ fused_weight
        else:  # one GEMM into one buffer of h's size: [dy, dh_fused] · [W; W_fused]
            grad_a = torch.cat([grad_out.to(h.dtype), grad_fused], dim=-1) @ torch.cat([weight, fused_weight])
        # the fused weight's gradient, g_fusedᵀ·a, from a recomputed a few rows at a time: a full (N, 4D) copy
        # would be the largest tensor of the block's backward
        rows_h, rows_g = h.flatten(0, -2), grad_fused.flatten(0, -2)
        grad_fused_weight = sum(g.T @ _activate(part, ctx.kind) for g, part in zip(
            rows_g.split(_RECOMPUTE_ROWS), rows_h.split(_RECOMPUTE_ROWS)))
        grad_fused_bias = rows_g.sum(0)
        return _activation_backward_(grad_a, h, ctx.kind), None, None, None, grad_fused_weight, grad_fused_bias


class BlockHandle:
    """The frozen parts of one timm block, for methods that call them in their own order.

    ``attention`` and ``ffn`` are the two residual branches without the residual add: methods decide what
    to add where. ``block`` stays reachable for methods that need the attention's projections.

    For timm's plain ``Attention`` and ``Mlp`` the two branches are computed here from the block's own
    weights (the only place avadapt depends on their internals; ``tests/test_backbone.py`` checks the
    result against the timm block), because a frozen backbone allows things timm cannot know: under
    autocast the frozen weights are cast to the compute dtype once and cached (autocast re-casts tensors
    that do not require grad at every call, and keeps each copy alive for backward); the frozen linear
    layers compute no weight gradient and, on a CPU (bf16 or fp32), add their bias inside oneDNN's matmul
    (``avadapt.layers.frozen_linear``); and the FFN's hidden activation, the largest tensor of a block,
    can be recomputed in backward instead of stored (``recompute_ffn``). Under bf16 on a CPU the attention
    runs as tiled explicit matmuls from the packed qkv (``avadapt.layers.packed_self_attention``), faster
    than the CPU flash kernel both ways at ViT shapes.
    """

    def __init__(self, block: nn.Module):
        self.block = block
        self.num_heads: int = block.attn.num_heads
        self.own_kernels = (type(block.attn) is Attention and type(block.mlp) is Mlp
                            and getattr(block.attn, "gate", None) is None)
        self.recompute_ffn = False
        self._cast_cache: dict[tuple[int, torch.dtype], tuple[int, torch.Tensor, torch.Tensor | None]] = {}

    def _compute_dtype(self, x: torch.Tensor) -> torch.dtype:
        device = x.device.type
        return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype

    def _weights(self, layer: nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layer's weight and bias in ``dtype``: as stored where they match or train, else a copy cast once
        while the weights are frozen and unchanged."""
        if layer.weight.requires_grad or layer.weight.dtype == dtype:
            return layer.weight, layer.bias
        key, version = (id(layer), dtype), layer.weight._version
        cached = self._cast_cache.get(key)
        if cached is None or cached[0] != version:
            bias = None if layer.bias is None else layer.bias.detach().to(dtype)
            cached = self._cast_cache[key] = (version, layer.weight.detach().to(dtype), bias)
        return cached[1], cached[2]

    def _linear(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if layer.weight.requires_grad:
            return layer(x)
        weight, bias = self._weights(layer, self._compute_dtype(x))
        with torch.autocast(x.device.type, enabled=False):
            return frozen_linear(x.to(weight.dtype), weight, bias)

    @staticmethod
    def _fused_down(down: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``down ∘ (frozen weight, bias)`` as one linear map, in the frozen weight's dtype."""
        down_weight = down.weight.to(weight.dtype)
        return down_weight @ weight, down.bias + (down_weight @ bias if bias is not None else 0)

    def store_frozen_weights_as(self, dtype: torch.dtype) -> int:
        """Keep this block's frozen linear layers in ``dtype`` only; returns the bytes given back."""
        if not self.own_kernels:
            return 0
        layers = [self.block.attn.qkv, self.block.attn.proj, self.block.mlp.fc1, self.block.mlp.fc2]
        freed = 0
        for layer in layers:
            if layer.weight.requires_grad or layer.weight.dtype == dtype:
                continue
            before = sum(p.numel() * p.element_size() for p in layer.parameters())
            layer.to(dtype)
            freed += before - sum(p.numel() * p.element_size() for p in layer.parameters())
        self._cast_cache.clear()
        return freed

    def attention(self, x: torch.Tensor, recompute: bool = False) -> torch.Tensor:
        """Frozen norm1 + self-attention (+ layer scale) over the sequences of x: (S, N, D) → (S, N, D).

        recompute: keep only x for backward and recompute the attention there (its q, k, v and output are
        four times the size of x).
        """
        if should_recompute(recompute, x):
            return checkpoint(self._attention, x, use_reentrant=False)
        return self._attention(x)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        block = self.block
        if not self.own_kernels:
            return block.ls1(block.attn(block.norm1(x)))
        attn = block.attn
        s, n, _ = x.shape
        qkv = self._linear(attn.qkv, block.norm1(x)).view(s, n, 3, attn.num_heads, attn.head_dim)
        out = attn.norm(self._self_attention(qkv))
        return block.ls1(attn.proj_drop(self._linear(attn.proj, out)))

    def _self_attention(self, qkv: torch.Tensor) -> torch.Tensor:
        """(S, N, 3, H, d) packed q, k, v → (S, N, H·d), with the block's q/k norms where it has them."""
        attn = self.block.attn
        if isinstance(attn.q_norm, nn.Identity) and isinstance(attn.k_norm, nn.Identity):
            return packed_self_attention(qkv, attn.scale)
        s, n = qkv.shape[:2]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (S, H, N, d)
        out = scaled_dot_product_attention(attn.q_norm(q), attn.k_norm(k), v, scale=attn.scale)
        return out.transpose(1, 2).reshape(s, n, -1)

    def attention_and_down(self, x: torch.Tensor, down: nn.Linear, need_output: bool = True,
                           recompute: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(attention(x), down(attention(x)))``: the frozen attention branch and an adapter's down-projection.

        The attention ends in a frozen linear map (its output projection), and down ∘ proj is one linear map:
        down(attention(x)) = u·(W_down·W_proj)ᵀ + W_down·b_proj + b_down, with u the projection's input.
        Backward keeps u anyway (the attention kernel's output), so the adapter costs no stored copy of
        attention(x). need_output=False skips the projection altogether (STG-CMA's T-Adapter replaces the
        temporal attention's output rather than adding to it) and returns None for it; then sequences of at
        most SHORT_SEQUENCE tokens (temporal attention) keep only q, k, v and the softmax, and u, as large
        as x, is recomputed from them in backward (2·N FLOPs per token and channel, N ≈ 10).
        recompute: keep only x and recompute the rest in backward.
        """
        if should_recompute(recompute, x):
            return checkpoint(self._attention_and_down, x, down, need_output, use_reentrant=False)
        return self._attention_and_down(x, down, need_output)

    def _attention_and_down(self, x: torch.Tensor, down: nn.Linear,
                            need_output: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        block = self.block
        attn = block.attn
        plain_end = (self.own_kernels and isinstance(block.ls1, nn.Identity) and isinstance(attn.norm, nn.Identity)
                     and not (attn.proj_drop.p > 0 and attn.proj_drop.training))
        if not plain_end:
            y = self._attention(x)
            return y, down(y)
        device = x.device.type
        fused_weight, fused_bias = self._fused_down(down, *self._weights(attn.proj, self._compute_dtype(x)))  # (r, D)
        s, n, _ = x.shape
        qkv = self._linear(attn.qkv, block.norm1(x)).view(s, n, 3, attn.num_heads, attn.head_dim)
        if not need_output and n <= SHORT_SEQUENCE and isinstance(attn.q_norm, nn.Identity) and isinstance(
                attn.k_norm, nn.Identity):
            with torch.autocast(device, enabled=False):
                compute = qkv.dtype
                return None, _ShortAttentionThenLinear.apply(
                    qkv, fused_weight.to(compute), fused_bias.to(compute), attn.scale)
        u = self._self_attention(qkv)
        hidden = F.linear(u, fused_weight, fused_bias)
        return (self._linear(attn.proj, u) if need_output else None), hidden

    def ffn_and_down(self, x: torch.Tensor, down: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ffn(x), down(ffn(x)))``: the frozen FFN branch and an adapter's down-projection.

        As in ``attention_and_down``, down ∘ fc2 is one linear map applied to the FFN's hidden activation a;
        a itself is recomputed in backward from the fc1 output that the activation's backward keeps anyway,
        so the adapter stores no copy of ffn(x).
        """
        if should_recompute(self.recompute_ffn, x):
            return checkpoint(self._ffn_and_down, x, down, use_reentrant=False)
        return self._ffn_and_down(x, down)

    def _ffn_and_down(self, x: torch.Tensor, down: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        block = self.block
        mlp = block.mlp
        activation = _activation_kind(mlp.act)
        plain = (self.own_kernels and not mlp.fc2.weight.requires_grad and activation is not None
                 and isinstance(block.ls2, nn.Identity)
                 and isinstance(mlp.norm, nn.Identity) and not any(
                     drop.p > 0 and drop.training for drop in (mlp.drop1, mlp.drop2)))
        if not plain:
            y = self._ffn(x)
            return y, down(y)
        device = x.device.type
        fc2_weight, fc2_bias = self._weights(mlp.fc2, self._compute_dtype(x))
        fused_weight, fused_bias = self._fused_down(down, fc2_weight, fc2_bias)  # (r, 4D)
        before_act = self._linear(mlp.fc1, block.norm2(x))
        compute = before_act.dtype
        with torch.autocast(device, enabled=False):
            return _ActivationThenTwoLinears.apply(before_act, activation, fc2_weight.to(compute),
                                                   None if fc2_bias is None else fc2_bias.to(compute),
                                                   fused_weight.to(compute), fused_bias.to(compute))

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen norm2 + MLP (+ layer scale): (S, N, D) → (S, N, D)."""
        if should_recompute(self.recompute_ffn, x):
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
            top, left = (rows - want_rows) // 2, (cols - want_cols) // 2
            grid = grid.reshape(1, rows, cols, -1)[:, top:top + want_rows, left:left + want_cols]
            grid = grid.reshape(1, want_rows * want_cols, -1)
        else:
            grid = resample_abs_pos_embed(grid, new_size=[want_rows, want_cols], old_size=[rows, cols],
                                          num_prefix_tokens=0, interpolation="bilinear", antialias=False)
        return torch.cat([cls_pos, grid], dim=1)
