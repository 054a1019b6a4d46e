"""Keep a CPU training process's resident memory close to what its tensors use (glibc and Linux only).

A training step frees and reallocates tensors of tens of MB. glibc's default heap reuses freed memory
without page faults but never gives back the holes between live blocks, so the peak grows step after
step; every large tensor in its own mapping keeps memory low but makes the kernel fault in and zero
every tensor afresh. What CPU training does instead (``docs/performance.md`` has the measurements):

- the heap for tensors up to 32 MiB (glibc's largest mmap threshold), mappings above;
- torch's transparent-huge-page allocation for the mapped tensors (``THP_MEM_ALLOC_ENABLE``), which torch
  reads at its first tensor allocation, so ``enable_huge_pages`` runs at process start, before any tensor;
- the heap's free pages given back (``malloc_trim``) after each frozen FFN of the last sixth of the
  blocks, where a step's peak builds up; trimming earlier blocks too costs time (every trimmed page is
  faulted in again) for little memory.

None of it happens at import or on a GPU: ``avadapt fit`` and ``avadapt demo`` call ``enable_huge_pages``
when no CUDA device is present, and the training module calls ``tune_heap_for_training`` when it trains on
a CPU and undoes it when training ends. ``AVADAPT_CPU_HEAP_TUNING=0`` switches all of it off;
``AVAdaptModule(tune_cpu_heap=False)`` the training part.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from dataclasses import dataclass, field
from functools import cache

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_HUGE_PAGE = 2 << 20  # bytes, x86-64
LARGEST_HEAP_TENSOR = 32 << 20  # glibc refuses larger mmap thresholds on 64-bit systems


HEAP_TUNING_VARIABLE = "AVADAPT_CPU_HEAP_TUNING"
_GLIBC_DEFAULT_THRESHOLD = 128 << 10  # bytes: glibc's initial mmap and trim thresholds


def heap_tuning_enabled() -> bool:
    """False where ``AVADAPT_CPU_HEAP_TUNING=0`` switches the heap tuning off."""
    return os.environ.get(HEAP_TUNING_VARIABLE, "1") != "0"


def enable_huge_pages() -> bool:
    """Turn on torch's huge-page allocation for large CPU tensors; returns whether it took effect.

    Call before torch allocates its first tensor (it reads the switch then; later calls change nothing).
    """
    if not heap_tuning_enabled():
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import torch  # after the switch: importing torch allocates no tensor, the probe below does

    before = _huge_page_kib()
    probe = torch.ones(4 * _HUGE_PAGE, dtype=torch.uint8)
    huge_pages = _huge_page_kib() - before >= _HUGE_PAGE // 1024
    del probe
    return huge_pages


def _set_mmap_threshold(threshold_bytes: int) -> bool:
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes))


@dataclass
class HeapTuning:
    """What ``tune_heap_for_training`` switched on; ``undo()`` switches it off again."""

    fixed_mmap_threshold: bool  # False where the C library is not glibc or the tuning is off
    trim_hooks: list = field(default_factory=list)

    def undo(self) -> None:
        for hook in self.trim_hooks:
            hook.remove()
        self.trim_hooks = []
        if self.fixed_mmap_threshold:
            _set_mmap_threshold(_GLIBC_DEFAULT_THRESHOLD)
            self.fixed_mmap_threshold = False


def tune_heap_for_training(backbone, last_fraction: float = 1 / 6) -> HeapTuning:
    """The heap for tensors up to 32 MiB, and the heap's free pages given back (glibc ``malloc_trim``) after
    each frozen FFN norm of the last ``last_fraction`` of the blocks in a forward pass with gradients (every
    method runs each block's FFN, once per stream), so the holes a training step leaves in the heap never
    pile up at the step's peak, where backward begins. Nothing where the tuning is switched off or the C
    library is not glibc.
    """
    if not 0 < last_fraction <= 1:
        raise ValueError(f"last_fraction must be in (0, 1], got {last_fraction}")
    if not heap_tuning_enabled():
        return HeapTuning(fixed_mmap_threshold=False)
    tuning = HeapTuning(fixed_mmap_threshold=_set_mmap_threshold(LARGEST_HEAP_TENSOR))
    if not can_return_free_heap():
        return tuning
    import torch

    def trim(module, args, output) -> None:
        if torch.is_grad_enabled():
            return_free_heap()

    blocks = backbone.blocks
    first = len(blocks) - max(1, round(last_fraction * len(blocks)))
    tuning.trim_hooks = [handle.block.norm2.register_forward_hook(trim) for handle in blocks[first:]]
    return tuning


def can_return_free_heap() -> bool:
    libc = _libc()
    return libc is not None and hasattr(libc, "malloc_trim")


def return_free_heap() -> None:
    """Give the heap's free pages back to the system now (glibc ``malloc_trim``; nothing elsewhere)."""
    if can_return_free_heap():
        _libc().malloc_trim(0)


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
