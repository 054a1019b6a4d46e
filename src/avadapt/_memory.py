"""Keep a training process's resident memory close to what its tensors really use.

glibc serves large allocations with mmap only below a threshold that it raises every time such a block
is freed; after the first training step most activation-sized tensors come from the heap instead, and
freed heap memory is rarely returned to the system, so resident memory grows well past the live tensors
(measured: about 1.2 GB extra on a CLIP ViT-B/16 STG-CMA step; see benchmarks/train_step.py). Fixing the
threshold keeps every large tensor in its own mapping, given back the moment it is freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def release_freed_memory_to_os(mmap_threshold_bytes: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold (default 1 MiB). Returns False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, mmap_threshold_bytes))
