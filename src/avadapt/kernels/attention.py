"""Attention kernels for low precision on a CPU, where PyTorch's flash kernel is slow.

``scaled_dot_product_attention``: any q, k, v, the flash kernel's forward with its fp32 backward.
``packed_self_attention``: self-attention from a linear layer's packed qkv, tiled bf16 matmuls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avadapt.kernels.selection import cpu_fast_path

_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _has_aten_op(name: str) -> bool:
    """Whether this torch build has the private ATen op ``name`` (probe before use; plain path otherwise)."""
    return hasattr(torch.ops.aten, name)


_CPU_FLASH = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward")


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """x in fp32 where its floating dtype is narrower (bf16, fp16); as it is otherwise (fp32, fp64)."""
    return x.float() if x.dtype in _LOW_PRECISION else x


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 scale: float | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(query, key, value, scale=scale)``, unmasked, no dropout.

    On a CPU, for bf16 or fp16 inputs that need gradients, the forward is the same flash kernel in the inputs'
    dtype, and the backward runs that kernel's fp32 version on upcast copies: PyTorch's low-precision CPU
    backward is the slow part of the call (``benchmarks/attention_backward.py`` compares the kernels; ``docs/performance.md``
    has the figures). Autograd keeps what the plain call keeps (query, key, value, the output and the fp32
    log-sum-exp); the gradients come out in the inputs' dtype, computed in fp32 instead of bf16.
    Shapes: (…, N, d) with one or two leading dimensions, as the fused kernel takes.
    """
    if not _takes_fp32_backward(query, key, value):
        return F.scaled_dot_product_attention(query, key, value, scale=scale)
    if query.dim() == 3:  # (S, N, d): one head per sequence, as F.scaled_dot_product_attention allows
        return _AttentionWithFp32Backward.apply(query[None], key[None], value[None], scale)[0]
    return _AttentionWithFp32Backward.apply(query, key, value, scale)


def _takes_fp32_backward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    """The CPU fast path, one low-precision dtype for all three, 3-D or 4-D, a backward to come, and the CPU flash ops."""
    tensors = (query, key, value)
    return (cpu_fast_path(query, key, value) and all(map(_has_aten_op, _CPU_FLASH)) and query.dtype in _LOW_PRECISION
            and all(t.dtype == query.dtype and t.dim() == query.dim() for t in tensors) and query.dim() in (3, 4)
            and torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


class _AttentionWithFp32Backward(torch.autograd.Function):
    """(B, H, N, d) attention: flash forward in the inputs' dtype, flash backward in fp32."""

    @staticmethod
    def forward(ctx, query, key, value, scale):
        with torch.autocast("cpu", enabled=False):
            out, log_sum_exp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                query, key, value, scale=scale)
        ctx.save_for_backward(query, key, value, out, log_sum_exp)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out, log_sum_exp = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                grad_out.float(), query.float(), key.float(), value.float(), out.float(), log_sum_exp,
                0.0, False, scale=ctx.scale)
        return *(g.to(t.dtype) for g, t in zip(grads, (query, key, value))), None


SCORES_BYTES_AT_ONCE = 4 << 20  # softmax tiles up to this size stay in the cores' caches between the matmuls


def packed_self_attention(qkv: torch.Tensor, scale: float) -> torch.Tensor:
    """Self-attention from a linear layer's packed output: qkv (S, N, 3, H, d) → (S, N, H·d).

    bf16 on a CPU runs as explicit matmuls over a few sequences at a time (``_PackedBf16Attention``): the flash
    kernel's forward and its fp32 backward reach a fraction of the bf16 matmul rate at ViT-B/16's shapes. Any
    other dtype or device (``cpu_fast_path``) takes ``scaled_dot_product_attention`` on views of qkv, as timm's Attention does.
    """
    s, n, _, heads, head_dim = qkv.shape
    if cpu_fast_path(qkv) and qkv.dtype == torch.bfloat16 and _has_aten_op("_softmax_backward_data"):
        with torch.autocast("cpu", enabled=False):
            return _PackedBf16Attention.apply(qkv, scale)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (S, H, N, d)
    return scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2).reshape(s, n, heads * head_dim)


def _sequences_at_once(qkv: torch.Tensor) -> int:
    _, n, _, heads, _ = qkv.shape
    return max(1, SCORES_BYTES_AT_ONCE // (heads * n * n * qkv.element_size()))


def _softmax_scores(q: torch.Tensor, k: torch.Tensor, scale: float, scores: torch.Tensor) -> torch.Tensor:
    """softmax(scale · q·kᵀ), the scale applied inside the matmul; ``scores`` is a buffer of the result's shape."""
    return torch.softmax(torch.baddbmm(scores, q, k.transpose(1, 2), beta=0, alpha=scale, out=scores), dim=-1)


class _PackedBf16Attention(torch.autograd.Function):
    """softmax(scale·QKᵀ)·V in bf16, a few sequences at a time; backward recomputes each tile's softmax.

    Keeps q, k, v for backward, put head-first tile by tile as forward reads them (qkv's size: what the flash
    kernel keeps, as views of qkv, besides its output); each tile's scores, softmax and their gradients live
    only while that tile is computed. The matmuls accumulate in fp32 and round to bf16, and the softmax reads
    bf16 scores, as bf16 autocast's unfused attention does.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, scale: float) -> torch.Tensor:
        s, n, _, heads, head_dim = qkv.shape
        out = qkv.new_empty(s, n, heads, head_dim)
        heads_first = qkv.new_empty(3, s * heads, n, head_dim)
        at_once = _sequences_at_once(qkv)
        scores = qkv.new_empty(min(at_once, s) * heads, n, n)
        for start in range(0, s, at_once):
            part = qkv[start:start + at_once]
            count = part.shape[0]
            q, k, v = tile = heads_first[:, start * heads:(start + count) * heads]
            tile.view(3, count, heads, n, head_dim).copy_(part.permute(2, 0, 3, 1, 4))
            probs = _softmax_scores(q, k, scale, scores[:count * heads])
            out[start:start + count] = torch.bmm(probs, v).view(count, heads, n, head_dim).transpose(1, 2)
        ctx.save_for_backward(heads_first)
        ctx.scale, ctx.qkv_shape = scale, qkv.shape
        return out.view(s, n, heads * head_dim)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (heads_first,) = ctx.saved_tensors
        s, n, _, heads, head_dim = ctx.qkv_shape
        scale = ctx.scale
        grad_out = grad_out.to(heads_first.dtype).view(s, n, heads, head_dim)
        grad_qkv = heads_first.new_empty(ctx.qkv_shape)
        at_once = min(_sequences_at_once(grad_qkv), s)
        scores = heads_first.new_empty(at_once * heads, n, n)
        grad_tile = torch.empty_like(heads_first[:, :at_once * heads])
        for start in range(0, s, at_once):
            count = min(at_once, s - start)
            q, k, v = heads_first[:, start * heads:(start + count) * heads]
            grad_q, grad_k, grad_v = grad_heads = grad_tile[:, :count * heads]
            grad_o = grad_out[start:start + count].transpose(1, 2).reshape(count * heads, n, head_dim)
            probs = _softmax_scores(q, k, scale, scores[:count * heads])
            grad_scores = torch.ops.aten._softmax_backward_data(
                torch.bmm(grad_o, v.transpose(1, 2)), probs, -1, heads_first.dtype)
            torch.bmm(probs.transpose(1, 2), grad_o, out=grad_v)
            torch.baddbmm(grad_q, grad_scores, k, beta=0, alpha=scale, out=grad_q)
            torch.baddbmm(grad_k, grad_scores.transpose(1, 2), q, beta=0, alpha=scale, out=grad_k)
            grad_qkv[start:start + count] = grad_heads.view(3, count, heads, n, head_dim).permute(1, 3, 0, 2, 4)
        return grad_qkv, None
