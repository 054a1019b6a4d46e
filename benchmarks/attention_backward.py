"""Forward + backward of one self-attention call from a packed qkv: PyTorch's CPU flash kernel against avadapt's.

ViT-B/16 heads (12 × 64) over 20 sequences, the spatial attention of a T = 10, batch-2 step: 197 video tokens
and 49 audio tokens. Three kernels: ``plain`` (``F.scaled_dot_product_attention`` on views of qkv, as timm's
Attention calls it), ``fp32_backward`` (``avadapt.kernels.scaled_dot_product_attention``: the same forward, an
fp32 backward; avadapt's cross-modal attention) and ``packed`` (``avadapt.kernels.packed_self_attention``,
what avadapt's ViT blocks run). Prints the median time of each and each one's speed-up over plain; ratios
measured in one process hold on a shared machine better than seconds.

    python benchmarks/attention_backward.py --json
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from kernel_timing import dtype_checked, kernel_parser, median_seconds

from avadapt.kernels import enable_huge_pages


def main() -> None:
    parser = kernel_parser(__doc__)
    parser.add_argument("--sequences", type=int, default=20)
    parser.add_argument("--tokens", type=int, nargs="+", default=[197, 49])
    args = parser.parse_args()
    enable_huge_pages()
    from avadapt.kernels import packed_self_attention, scaled_dot_product_attention

    dtype = dtype_checked(parser, args)
    heads, head_dim = 12, 64
    scale = head_dim**-0.5

    def on_views(attention):
        def call(qkv: torch.Tensor) -> torch.Tensor:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (S, H, N, d), as in timm's Attention
            return attention(q, k, v, scale=scale).transpose(1, 2).flatten(2)
        return call

    kernels = {"plain": on_views(F.scaled_dot_product_attention),
               "fp32_backward": on_views(scaled_dot_product_attention),
               "packed": lambda qkv: packed_self_attention(qkv, scale)}
    rows = []
    for tokens in args.tokens:
        qkv = torch.randn(args.sequences, tokens, 3, heads, head_dim, dtype=dtype, requires_grad=True)
        grad = torch.randn(args.sequences, tokens, heads * head_dim, dtype=dtype)

        def step(kernel, qkv=qkv, grad=grad) -> None:
            qkv.grad = None
            kernel(qkv).backward(grad)

        seconds = dict(zip(kernels, median_seconds([lambda k=k: step(k) for k in kernels.values()], args.repeats)))
        row = {"tokens": tokens, **{f"{name}_ms": round(t * 1e3, 2) for name, t in seconds.items()}}
        row.update({f"plain_over_{name}": round(seconds["plain"] / t, 2)
                    for name, t in seconds.items() if name != "plain"})
        rows.append(row)
    result = {"precision": args.precision, "threads": torch.get_num_threads(), "sequences": args.sequences,
              "rows": rows}
    print(json.dumps(result, indent=2) if args.json else "\n".join(map(str, rows)))


if __name__ == "__main__":
    main()
