"""What the single-kernel benchmarks share: their common options and timing in turns."""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def kernel_parser(description: str) -> argparse.ArgumentParser:
    """--precision (bf16 by default), --repeats and --json; the caller adds its shape options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_precision_options(parser, default="bf16")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    return parser


def add_precision_options(parser: argparse.ArgumentParser, default: str) -> None:
    """--precision {32,bf16} and --allow-emulated-bf16, which ``dtype_checked`` reads."""
    parser.add_argument("--precision", choices=["32", "bf16"], default=default)
    parser.add_argument("--allow-emulated-bf16", action="store_true",
                        help="run --precision bf16 even on a CPU without native bf16 arithmetic")


def dtype_checked(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.dtype:
    """The dtype of ``--precision``; exits with a clear message for bf16 on a CPU that would emulate it.

    On an AMD Zen 3 (AVX2 only) a 2048² bf16 matmul ran at 0.27 GFLOP/s against 115 in fp32: a ViT-B/16 step
    or layer timing would take hours, and any ratio to an emulated peak would mean nothing.
    """
    from avadapt.kernels import cpu_supports_bf16

    if args.precision == "bf16" and not (cpu_supports_bf16() or args.allow_emulated_bf16):
        parser.error("--precision bf16: this CPU has no native bf16 arithmetic (AVX512-BF16 or AMX), so bf16 "
                     "matmuls are emulated, hundreds of times slower than fp32; measure bf16 on a CPU that has "
                     "it, pass --precision 32, or pass --allow-emulated-bf16")
    return torch.bfloat16 if args.precision == "bf16" else torch.float32


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
