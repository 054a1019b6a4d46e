"""What the single-kernel benchmarks share: their common options and timing in turns."""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def kernel_parser(description: str) -> argparse.ArgumentParser:
    """--precision, --repeats and --json; the caller adds its shape options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["32", "bf16"], default="bf16")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    return parser


def dtype_of(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bf16" else torch.float32


def median_seconds(fns, repeats: int) -> list[float]:
    """Median time of each function, timed in turns so that a shared machine's swings reach all alike."""
    for fn in fns:
        fn()
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, own in zip(fns, times):
            start = time.perf_counter()
            fn()
            own.append(time.perf_counter() - start)
    return [statistics.median(own) for own in times]
