"""Forward + backward of one attention call: PyTorch's CPU flash kernel against avadapt's (fp32 backward).

ViT-B/16 heads (12 × 64) over 20 sequences, the spatial attention of a T = 10, batch-2 step: 197 video tokens
and 49 audio tokens. Prints the median time of each and their ratio; ratios measured in one process hold on a
shared machine better than seconds.

    python benchmarks/attention_backward.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from avadapt._memory import configure_cpu_allocator


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=20)
    parser.add_argument("--tokens", type=int, nargs="+", default=[197, 49])
    parser.add_argument("--precision", choices=["32", "bf16"], default="bf16")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    configure_cpu_allocator()
    from avadapt.layers import scaled_dot_product_attention

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    heads, head_dim = 12, 64
    rows = []
    for tokens in args.tokens:
        qkv = torch.randn(args.sequences, tokens, 3, heads, head_dim, dtype=dtype, requires_grad=True)
        grad = torch.randn(args.sequences, heads, tokens, head_dim, dtype=dtype)

        def step(attention, qkv=qkv, grad=grad) -> None:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (S, H, N, d), as in a ViT block
            qkv.grad = None
            attention(q, k, v, scale=head_dim**-0.5).backward(grad)

        plain, ours = median_seconds([lambda: step(F.scaled_dot_product_attention),
                                      lambda: step(scaled_dot_product_attention)], args.repeats)
        rows.append({"tokens": tokens, "plain_ms": round(plain * 1e3, 2), "avadapt_ms": round(ours * 1e3, 2),
                     "plain_over_avadapt": round(plain / ours, 2)})
    result = {"precision": args.precision, "threads": torch.get_num_threads(), "sequences": args.sequences,
              "rows": rows}
    print(json.dumps(result, indent=2) if args.json else "\n".join(map(str, rows)))


if __name__ == "__main__":
    main()
