"""Stochastic depth as one op that keeps only the per-sample mask for backward.

Written as ``x + DropPath(branch)``, stochastic depth makes two branch-sized tensors (timm scales, then
masks) before the add; ``StochasticDepth.add`` is one ``addcmul``.
"""

from __future__ import annotations

import torch
from torch import nn


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample (timm's ``DropPath``: survivors scaled by 1/keep), in one op."""

    def __init__(self, rate: float):
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"drop-path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def sample_mask(self, x: torch.Tensor, sample_dims: int = 1) -> torch.Tensor | None:
        """Factors 0 or 1/keep, one per sample, a sample being an index of x's first ``sample_dims``
        dimensions (shape (S₁, …, 1, …)); None when nothing drops."""
        if not self.training or self.rate == 0:
            return None
        keep = 1 - self.rate
        shape = x.shape[:sample_dims] + (1,) * (x.ndim - sample_dims)
        return torch.empty(shape, dtype=torch.float32, device=x.device).bernoulli_(keep).div_(keep)

    @staticmethod
    def add(x: torch.Tensor, branch: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x + mask·branch; autograd keeps the mask only.

        A bf16 branch (autocast) onto an fp32 stream is cast first: PyTorch's mixed-dtype ``addcmul`` on a CPU
        is about 10× slower than the cast and an fp32 ``addcmul`` together.
        """
        return x + branch if mask is None else torch.addcmul(x, branch.to(x.dtype), mask)

    def forward(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return self.add(x, branch, self.sample_mask(x))

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
