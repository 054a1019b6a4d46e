"""Autograd keeping a recipe instead of a tensor: a residual sum rebuilt in backward from smaller parts.

A frozen LayerNorm keeps its input, a residual sum the size of the tokens, although the caller often holds
everything that sum is made of at a fraction of its size. ``rebuilt_in_backward`` has autograd keep a
recipe instead and redo the sum when backward needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from avadapt.kernels.selection import cpu_fast_path


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
def rebuilt_in_backward(target: torch.Tensor, rebuild: Callable[[], torch.Tensor] | None) -> Iterator[None]:
    """Inside this block, wherever autograd would keep ``target`` for backward it keeps ``rebuild`` instead;
    with ``rebuild=None`` (no gradient, activation checkpointing), or off the CPU fast path
    (``cpu_fast_path``), the block runs as it is.

    ``rebuild()`` must return target's values from tensors kept alive anyway (it runs under the autocast
    state of this block, without grad) and must not hold target itself, or nothing is saved. Tensors are
    matched by address, shape, strides and dtype; an op that saves a converted copy is left alone. Not for
    use inside activation checkpointing, which replaces saved tensors by its own means.
    """
    if rebuild is None or not cpu_fast_path(target):
        yield
        return
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
