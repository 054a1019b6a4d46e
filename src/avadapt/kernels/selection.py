"""Which path a call takes: this package's fast paths for CPU tensors, plain PyTorch everywhere else.

The fast paths (oneDNN's bias-fused linear, the bf16 packed attention, hand-written backward passes, saved
tensors rebuilt in backward) were written for and are tested on a CPU. On CUDA or any other device, and while
``torch.compile`` traces the model, every kernel of this package runs the plain PyTorch call it stands for
(``F.linear``, ``F.scaled_dot_product_attention``, autograd's own backward): the path users of those devices
expect, and the one ``torch.compile`` optimises. ``plain_pytorch()`` forces the plain path on a CPU too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_plain_forced = 0  # depth of nested ``plain_pytorch()`` blocks; a global so autograd's threads see it too


def cpu_fast_path(*tensors: torch.Tensor | None) -> bool:
    """True when the CPU fast paths may run on ``tensors``: every one (None skipped) lies on the CPU, no
    ``plain_pytorch()`` block is open and ``torch.compile`` is not tracing."""
    if torch.compiler.is_compiling() or _plain_forced:
        return False
    return all(t.device.type == "cpu" for t in tensors if t is not None)


@contextmanager
def plain_pytorch() -> Iterator[None]:
    """Inside this block every kernel of this package runs its plain PyTorch path, on a CPU too (to compare
    the two paths, or to rule the fast paths out when a result looks wrong)."""
    global _plain_forced
    _plain_forced += 1
    try:
        yield
    finally:
        _plain_forced -= 1
