"""Scaled dot-product attention whose CPU backward runs in fp32 for bf16 and fp16 inputs."""

from __future__ import annotations

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
