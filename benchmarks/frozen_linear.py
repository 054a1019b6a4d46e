"""Forward + backward of one frozen linear layer with a bias: ``F.linear`` against ``avadapt.kernels.frozen_linear``.

The four frozen linear layers of a ViT-B/16 block over the video tokens of a T = 10, batch-2 step (20 × 197 =
3940 rows) and the audio tokens (20 × 49 = 980 rows); the weight takes no gradient, the input does. Prints
the median time of each and their ratio, timed in turns in one process (ratios hold on a shared machine
better than seconds).

    python benchmarks/frozen_linear.py --json
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from kernel_timing import dtype_checked, kernel_parser, median_seconds

from avadapt.kernels import enable_huge_pages

LAYERS = {"qkv": (768, 2304), "proj": (768, 768), "fc1": (768, 3072), "fc2": (3072, 768)}


def main() -> None:
    parser = kernel_parser(__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[3940, 980])
    args = parser.parse_args()
    enable_huge_pages()
    from avadapt.kernels import frozen_linear

    dtype = dtype_checked(parser, args)
    rows = []
    for count in args.rows:
        for layer, (fan_in, fan_out) in LAYERS.items():
            x = torch.randn(count, fan_in, dtype=dtype, requires_grad=True)
            weight, bias = torch.randn(fan_out, fan_in, dtype=dtype), torch.randn(fan_out, dtype=dtype)
            grad = torch.randn(count, fan_out, dtype=dtype)

            def step(linear, x=x, weight=weight, bias=bias, grad=grad) -> None:
                x.grad = None
                linear(x, weight, bias).backward(grad)

            plain, ours = median_seconds([lambda: step(F.linear), lambda: step(frozen_linear)], args.repeats)
            rows.append({"rows": count, "layer": layer, "plain_ms": round(plain * 1e3, 2),
                         "avadapt_ms": round(ours * 1e3, 2), "plain_over_avadapt": round(plain / ours, 3)})
    result = {"precision": args.precision, "threads": torch.get_num_threads(), "rows": rows}
    print(json.dumps(result, indent=2) if args.json else "\n".join(map(str, rows)))


if __name__ == "__main__":
    main()
