"""Keep a CPU training process's resident memory close to what its tensors use.

What was measured (CLIP ViT-B/16 STG-CMA, T = 10, batch 2, ``benchmarks/train_step.py``, 2 cores; the
README has every run):

- glibc's default: large tensors come from the heap, which reuses freed memory without page faults but never
  gives back the holes between live blocks; in a three-step fp32 trace the peak grew 4.2, 5.3, 6.1 GB, and
  the benchmark's steps peaked at 5.5–5.6 GB.
- Every large tensor in its own mapping (mmap threshold 1 MiB): resident memory near the live tensors, but
  every tensor is fresh memory the kernel must fault in and zero (one fp32 run: 24.7 s a step, 4.07 GB).
- What we do: the heap for tensors up to 32 MiB (glibc's largest threshold), mappings above, torch's
  transparent-huge-page allocation (``THP_MEM_ALLOC_ENABLE``: 2 MiB pages, 512× fewer faults for what is
  mapped fresh; allocating and filling a 60 MB tensor went from about 22 ms to 7 ms), and in training the
  heap's free pages given back after every frozen FFN (``malloc_trim``): fp32 peaks of 4.04–4.07 GB, steps
  of 17.9–18.7 s in three of four runs (25.1 s in the fourth); without the trim 15.2 and 21.0 s. ``AVAdaptModule(trim_cpu_heap=False)``
  keeps glibc's heap as is.

torch reads the huge-page switch at its first tensor allocation, so ``configure_cpu_allocator`` must run
before any tensor exists; it reports what took effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from dataclasses import dataclass
from functools import cache

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_HUGE_PAGE = 2 << 20  # bytes, x86-64
LARGEST_HEAP_TENSOR = 32 << 20  # glibc refuses larger mmap thresholds on 64-bit systems


@dataclass(frozen=True)
class AllocatorSettings:
    fixed_mmap_threshold: bool  # False where the C library is not glibc
    huge_pages: bool  # False where torch had allocated a tensor before, or the kernel gives none


def configure_cpu_allocator(mmap_threshold_bytes: int = LARGEST_HEAP_TENSOR) -> AllocatorSettings:
    """Fix glibc's mmap threshold and turn on torch's huge-page allocation; call before creating tensors."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import torch  # after the switch: importing torch allocates no tensor, the probe below does

    before = _huge_page_kib()
    probe = torch.ones(4 * _HUGE_PAGE, dtype=torch.uint8)
    huge_pages = _huge_page_kib() - before >= _HUGE_PAGE // 1024
    del probe
    libc = _libc()
    fixed = libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, mmap_threshold_bytes))
    return AllocatorSettings(fixed_mmap_threshold=fixed, huge_pages=huge_pages)


def return_free_heap_during_training(backbone, last_fraction: float = 1 / 3) -> list:
    """After each frozen FFN norm of the last ``last_fraction`` of the blocks, in a forward pass with
    gradients (every method runs each block's FFN, once per stream), give the heap's free pages back to
    the system (glibc ``malloc_trim``), so the holes a training step leaves in the heap never pile up at
    the step's peak, which is where backward begins.

    Trimming in the earlier blocks too keeps no lower peak and costs time: it returns the holes the
    previous backward left, which the rest of the forward would have filled, and every page handed back
    is faulted in and zeroed again. Returns the hook handles (none where the C library has no
    ``malloc_trim``); ``handle.remove()`` undoes it.
    """
    if not 0 < last_fraction <= 1:
        raise ValueError(f"last_fraction must be in (0, 1], got {last_fraction}")
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return []
    import torch

    def trim(module, args, output) -> None:
        if torch.is_grad_enabled():
            libc.malloc_trim(0)

    blocks = backbone.blocks
    first = len(blocks) - max(1, round(last_fraction * len(blocks)))
    return [handle.block.norm2.register_forward_hook(trim) for handle in blocks[first:]]


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def _huge_page_kib() -> int:
    """Anonymous memory of this process backed by huge pages (0 where the kernel does not say)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            match = re.search(r"AnonHugePages:\s+(\d+) kB", f.read())
    except OSError:
        return 0
    return int(match.group(1)) if match else 0
