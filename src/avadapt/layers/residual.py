"""Residual additions that cost autograd as little memory as possible.

Two things a frozen-backbone training step stores for backward are avoidable:

- stochastic depth written as ``x + DropPath(branch)`` makes two branch-sized tensors (timm scales, then
  masks) before the add; ``StochasticDepth.add`` is one ``addcmul`` that keeps only the (S, 1, 1) mask;
- a frozen LayerNorm keeps its input, a residual sum the size of the tokens, although the caller often
  holds everything that sum is made of at a fraction of its size. ``rebuilt_in_backward`` has autograd
  keep a recipe instead and redo the sum when backward needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class StochasticDepth(nn.Module):
    """Drop a residual branch per sample (timm's ``DropPath``: survivors scaled by 1/keep), in one op."""

    def __init__(self, rate: float):
        super().__init__()
        if not 0 <= rate < 1:
            raise ValueError(f"drop-path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def sample_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """(S, 1, …) per-sample factors 0 or 1/keep for x's leading dimension; None when nothing drops."""
        if not self.training or self.rate == 0:
            return None
        keep = 1 - self.rate
        return torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=torch.float32,
                           device=x.device).bernoulli_(keep).div_(keep)

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


class _Recipe:
    """What autograd keeps in place of a tensor: a function that rebuilds it, run in the forward's autocast."""

    def __init__(self, rebuild: Callable[[], torch.Tensor], device: str):
        self.rebuild = rebuild
        self.device = device
        self.autocast = torch.is_autocast_enabled(device)
        self.autocast_dtype = torch.get_autocast_dtype(device)

    def __call__(self) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(self.device, dtype=self.autocast_dtype, enabled=self.autocast):
            return self.rebuild()


@contextmanager
def rebuilt_in_backward(target: torch.Tensor, rebuild: Callable[[], torch.Tensor]) -> Iterator[None]:
    """Inside this block, wherever autograd would keep ``target`` for backward it keeps ``rebuild`` instead.

    ``rebuild()`` must return target's values from tensors kept alive anyway (it runs under the autocast
    state of this block, without grad) and must not hold target itself, or nothing is saved. Tensors are
    matched by address, shape, strides and dtype; an op that saves a converted copy is left alone. Not for
    use inside activation checkpointing, which replaces saved tensors by its own means.
    """
    signature = (target.data_ptr(), target.shape, target.stride(), target.dtype)
    recipe = _Recipe(rebuild, target.device.type)
    del target  # the hooks live as long as the graph: they must not keep the tensor they replace

    def pack(tensor: torch.Tensor):
        if (tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype) == signature:
            return recipe
        return tensor

    def unpack(packed):
        return packed() if isinstance(packed, _Recipe) else packed

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield


def call_keeping_recipe(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                        recipe: Callable[[], torch.Tensor] | None):
    """fn(x), with autograd keeping ``recipe`` instead of x wherever fn saves x for backward; plain fn(x)
    without a recipe."""
    if recipe is None:
        return fn(x)
    with rebuilt_in_backward(x, recipe):
        return fn(x)
