"""A linear layer with frozen weights, whose bf16 CPU forward adds the bias inside the matmul."""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F


@cache
def _onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


def frozen_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for weights that take no gradient; x's gradient flows as usual.

    For bf16 on a CPU with a bias, PyTorch's addmm first fills the output with the bias and then has the
    matmul read it back, an extra pass over the output; oneDNN's linear adds the bias as the matmul writes
    (``benchmarks/frozen_linear.py`` times forward + backward of ViT-B/16's layers; the README has figures).
    Everything else, and any weight or bias that needs a gradient, is plain ``F.linear``. Autocast is the
    caller's business.
    """
    fused = (bias is not None and x.device.type == "cpu" and x.dtype == weight.dtype == bias.dtype == torch.bfloat16
             and not (weight.requires_grad or bias.requires_grad) and _onednn_linear_available())
    if not fused:
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and x.requires_grad:
        return _FrozenLinear.apply(x, weight, bias)
    return _onednn_linear(x, weight, bias)


class _FrozenLinear(torch.autograd.Function):
    """oneDNN's bias-fused linear forward; backward is x's gradient only (grad · W), keeping W alone."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return grad_out.to(weight.dtype) @ weight, None, None
