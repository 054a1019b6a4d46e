"""Scaled dot-product attention whose CPU backward runs in fp32 for bf16 and fp16 inputs."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

_LOW_PRECISION = (torch.bfloat16, torch.float16)


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 scale: float | None = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(query, key, value, scale=scale)``, unmasked, no dropout.

    On a CPU, for bf16 or fp16 inputs that need gradients, the forward is the same flash kernel in the inputs'
    dtype, and the backward runs that kernel's fp32 version on upcast copies: PyTorch's low-precision CPU
    backward is the slow part of the call (``benchmarks/attention_backward.py`` compares the two; the README
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
    """CPU, one low-precision dtype for all three, 3-D or 4-D, and a backward to come."""
    tensors = (query, key, value)
    return (query.device.type == "cpu" and query.dtype in _LOW_PRECISION
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


def grouped_self_attention(qkv: torch.Tensor, groups: list[tuple[int, int]], num_heads: int,
                           scale: float) -> torch.Tensor:
    """Self-attention over rows that hold several groups of sequences, e.g. both modalities' tokens.

    qkv: (R, 3·H·d), a frozen qkv projection's output for all rows at once; groups: (S_g, N_g) per group, in
    row order, each S_g sequences of N_g tokens (R = Σ S_g·N_g). Returns the attention output (R, H·d),
    ready for the output projection of all rows at once: the two frozen linears of a block then run one
    GEMM over both modalities instead of one each (on a CPU, bf16 GEMMs of ~1000 rows, an audio stream's,
    run at about half the rate of larger ones). Attention runs per group (CPU flash kernel; fp32 backward
    for bf16/fp16, as ``scaled_dot_product_attention``), and backward writes the qkv gradient in its
    (R, 3, H, d) layout directly, without the stack and copy autograd makes of per-tensor q, k, v grads.
    Off a CPU: per-group ``F.scaled_dot_product_attention``.
    """
    rows, width = qkv.shape
    head_dim = width // (3 * num_heads)
    if sum(s * n for s, n in groups) != rows or width != 3 * num_heads * head_dim:
        raise ValueError(f"qkv {tuple(qkv.shape)} does not hold groups {groups} of {num_heads} heads")
    if qkv.device.type == "cpu":
        return _GroupedAttention.apply(qkv, tuple(groups), num_heads, scale)
    outputs = [F.scaled_dot_product_attention(*_split_qkv(qkv[rows], s, n, num_heads), scale=scale)
               .transpose(1, 2).reshape(s * n, -1) for rows, (s, n) in zip(_row_slices(groups), groups)]
    return torch.cat(outputs)


def _row_slices(groups) -> list[slice]:
    bounds = [0]
    for s, n in groups:
        bounds.append(bounds[-1] + s * n)
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _split_qkv(part: torch.Tensor, s: int, n: int, heads: int) -> list[torch.Tensor]:
    """(S·N, 3·H·d) rows → q, k, v as (S, H, N, d) views."""
    return part.view(s, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def _as_heads(part: torch.Tensor, s: int, n: int, heads: int) -> torch.Tensor:
    """(S·N, H·d) rows → an (S, H, N, d) view."""
    return part.view(s, n, heads, -1).transpose(1, 2)


class _GroupedAttention(torch.autograd.Function):
    """CPU kernel of ``grouped_self_attention``; saves qkv, the output and each group's log-sum-exp."""

    @staticmethod
    def forward(ctx, qkv, groups, num_heads, scale):
        out = qkv.new_empty(qkv.shape[0], qkv.shape[1] // 3)
        log_sum_exps = []
        with torch.autocast("cpu", enabled=False):
            for rows, (s, n) in zip(_row_slices(groups), groups):
                group_out, log_sum_exp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    *_split_qkv(qkv[rows], s, n, num_heads), scale=scale)
                _as_heads(out[rows], s, n, num_heads).copy_(group_out)
                log_sum_exps.append(log_sum_exp)
        ctx.save_for_backward(qkv, out, *log_sum_exps)
        ctx.groups, ctx.num_heads, ctx.scale = groups, num_heads, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qkv, out, *log_sum_exps = ctx.saved_tensors
        heads = ctx.num_heads
        compute = torch.float32 if qkv.dtype in _LOW_PRECISION else qkv.dtype
        grad_out = grad_out.contiguous()
        grad_qkv = torch.empty_like(qkv)
        with torch.autocast("cpu", enabled=False):
            for rows, (s, n), log_sum_exp in zip(_row_slices(ctx.groups), ctx.groups, log_sum_exps):
                # one upcast per tensor and group (nothing in fp32), then (S, H, N, d) views of it
                grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    _as_heads(grad_out[rows].to(compute), s, n, heads),
                    *_split_qkv(qkv[rows].to(compute), s, n, heads),
                    _as_heads(out[rows].to(compute), s, n, heads), log_sum_exp, 0.0, False, scale=ctx.scale)
                grad_view = grad_qkv[rows].view(s, n, 3, heads, -1)
                for i, grad in enumerate(grads):  # (S, H, N, d) → the qkv layout, cast on the way
                    grad_view[:, :, i].copy_(grad.transpose(1, 2))
        return grad_qkv, None, None, None
