"""Keep a CPU training process's resident memory close to what its tensors use.

What was measured (CLIP ViT-B/16 STG-CMA, T = 10, batch 2, fp32, 2 cores; per training step after the
first, peak resident memory and minor page faults; the README has the benchmark runs):

- glibc's default: large tensors come from the heap, which reuses freed memory without page faults but never
  gives back the holes between live blocks; the peak grew step after step (4.2, 5.3, 6.1 GB in one trace).
- Every large tensor in its own mapping (mmap threshold 1 MiB): resident memory near the live tensors, but
  every tensor is fresh memory the kernel must fault in and zero (one run: 24.7 s a step).
- What we do: the heap for tensors up to 32 MiB (glibc's largest threshold), mappings above, torch's
  transparent-huge-page allocation (``THP_MEM_ALLOC_ENABLE``; mapping and filling a 46 MB tensor over and
  over: 3.5 ms with 2 MiB pages, 10.4 ms with 4 KiB pages), and in training the heap's free pages given
  back (``malloc_trim``) after each frozen FFN of the last sixth of the blocks. Earlier measurements (fp32,
  an older model code): trimming in the last third, 3.81–3.86 GB peaks and 89–133 k faults a step; after
  every FFN, the same peaks for 164–208 k faults and more system time; never, 4.6–4.8 GB; the heap for
  every size (``M_MMAP_MAX`` 0), 4.0–4.15 GB.
- Every page trimmed is faulted in and zeroed again when backward reuses it, which costs a bf16 step
  (where the rest is fast) a measurable share. ``benchmarks/train_step.py`` runs, one process each, bf16
  fraction of peak and peak RSS: last third, median 0.461 over 7 runs (0.334–0.469; the 0.334 against a
  1184 GFLOP/s matmul peak) at 2779–2839 MB; last sixth, median 0.472 over 7 (0.411–0.492) at 2785–2878 MB;
  the last block only 0.478–0.492 (4 runs) at 2829–2886 MB; never 0.500 and 0.506 at 3145 and 3148 MB.
  fp32 peaks: last sixth 3821–3884 MB (3 runs), the last block only 3969 and 4011 MB. The last sixth keeps
  both precisions' peaks clear of the issue's limits (2940 and 4020 MB) and gains part of the speed.
- Later runs (bf16 unless said): mapping every tensor from 8 MB up and never trimming kept the peak at
  2762–2785 MB but read 0.34–0.43 of the peak against 0.473 for the defaults, with three times the system
  time (every qkv and fc1 output faulted in afresh); from 16 MB up, never trimming, 3059 MB; every tensor
  from the heap (``M_MMAP_MAX`` 0) in fp32, 4177 MB at the defaults' speed.

``AVAdaptModule(trim_cpu_heap=False)`` keeps glibc's heap as is.

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


def return_free_heap_during_training(backbone, last_fraction: float = 1 / 6) -> list:
    """After each frozen FFN norm of the last ``last_fraction`` of the blocks, in a forward pass with
    gradients (every method runs each block's FFN, once per stream), give the heap's free pages back to
    the system (glibc ``malloc_trim``), so the holes a training step leaves in the heap never pile up at
    the step's peak, which is where backward begins.

    Trimming in earlier blocks too lowers the peak only a little (bf16: by tens of MB from the last third)
    and costs time: it returns holes the previous backward left, which the rest of the forward would have
    filled, and every page handed back is faulted in and zeroed again (the module docstring has the runs).
    Returns the hook handles (none where the C library has no ``malloc_trim``); ``handle.remove()`` undoes it.
    """
    if not 0 < last_fraction <= 1:
        raise ValueError(f"last_fraction must be in (0, 1], got {last_fraction}")
    if not can_return_free_heap():
        return []
    import torch

    def trim(module, args, output) -> None:
        if torch.is_grad_enabled():
            return_free_heap()

    blocks = backbone.blocks
    first = len(blocks) - max(1, round(last_fraction * len(blocks)))
    return [handle.block.norm2.register_forward_hook(trim) for handle in blocks[first:]]


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
