"""A linear layer with frozen weights, tuned for a CPU: bias added inside the matmul, row blocks in bf16,
weights cast to the compute dtype once."""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F

from avadapt.kernels.selection import cpu_fast_path

FUSED_DTYPES = (torch.bfloat16, torch.float32)


@cache
def _onednn_linear_available(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether oneDNN's linear runs here in ``dtype``: it needs the op in the torch build *and* a CPU oneDNN
    has a kernel for (an AVX2-only CPU such as AMD Zen 3 has none for bf16: the op raises "could not create
    a primitive descriptor"), so one tiny product is tried rather than guessed from CPU flags."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    x, weight, bias = torch.ones(1, 8, dtype=dtype), torch.ones(8, 8, dtype=dtype), torch.zeros(8, dtype=dtype)
    try:
        torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    except RuntimeError:
        return False
    return True


# bf16 products with at most NARROW_OUTPUT columns and between BLOCK_ROWS and 4·BLOCK_ROWS rows run in row
# blocks of at most BLOCK_ROWS: PyTorch 2.14's oneDNN kernel ran 980- and 1470-row products (the audio stream
# of a T = 10, batch-2 step has 980 tokens) at about half the rate of 490- or 1960-row ones on 2 threads
# (isolated torch.mm timings, K = 768/2304/3072 → 768: ~370 against 650-900 GFLOP/s); the effect on whole
# layers is what ``benchmarks/frozen_linear.py --rows 980`` measures (``docs/performance.md`` has figures).
BLOCK_ROWS = 512
NARROW_OUTPUT = 1024


def _row_blocks(rows: int, out_features: int, dtype: torch.dtype = torch.bfloat16) -> int:
    """1, or how many row blocks a bf16 product runs in. fp32 runs whole: on an AMD Zen 3 (AVX2) row
    blocks were no faster in fp32 at 980 and 1470 rows (forward + backward 0.95–1.01 of F.linear's time
    against 0.91–0.98 whole, ad-hoc timings like ``benchmarks/frozen_linear.py``'s)."""
    if dtype != torch.bfloat16 or out_features > NARROW_OUTPUT or not BLOCK_ROWS < rows < 4 * BLOCK_ROWS:
        return 1
    return -(-rows // BLOCK_ROWS)


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    blocks = _row_blocks(rows.shape[0], weight.shape[0], weight.dtype)
    if blocks == 1:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")
    out = torch.cat([torch.ops.mkldnn._linear_pointwise(part.contiguous(), weight, bias, "none", [], "")
                     for part in rows.tensor_split(blocks)])
    return out.view(*x.shape[:-1], weight.shape[0])


def _input_gradient(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """grad_out · W, in row blocks where ``_row_blocks`` says so."""
    rows = grad_out.reshape(-1, grad_out.shape[-1])
    blocks = _row_blocks(rows.shape[0], weight.shape[1], weight.dtype)
    if blocks == 1:
        return grad_out @ weight
    grad_in = rows.new_empty(rows.shape[0], weight.shape[1])
    for part, out in zip(rows.tensor_split(blocks), grad_in.tensor_split(blocks)):
        torch.mm(part, weight, out=out)
    return grad_in.view(*grad_out.shape[:-1], weight.shape[1])


def frozen_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for weights that take no gradient; x's gradient flows as usual.

    On a CPU with a bias, in bf16 or fp32, PyTorch's addmm first fills the output with the bias and then has
    the matmul read it back, an extra pass over the output; oneDNN's linear adds the bias as the matmul
    writes (``benchmarks/frozen_linear.py`` times forward + backward of ViT-B/16's layers; ``docs/performance.md`` has
    figures). Everything else, and any weight or bias that needs a gradient, is plain ``F.linear``.
    Autocast is the caller's business: with it on, call this with autocast disabled and x already cast.
    """
    fused = (bias is not None and cpu_fast_path(x, weight, bias) and x.dtype == weight.dtype == bias.dtype
             and x.dtype in FUSED_DTYPES and not (weight.requires_grad or bias.requires_grad)
             and _onednn_linear_available(x.dtype))
    if not fused:
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and x.requires_grad:
        return _FrozenLinear.apply(x, weight, bias)
    return _onednn_linear(x, weight, bias)


class _FrozenLinear(torch.autograd.Function):
    """oneDNN's bias-fused linear forward; backward is x's gradient only (grad · W), keeping W alone."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (weight,) = ctx.saved_tensors
        return _input_gradient(grad_out.to(weight.dtype), weight), None, None


class FrozenWeightCache:
    """Frozen linear weights in the compute dtype, cast once while they stay unchanged.

    Autocast re-casts a weight that takes no gradient at every call and keeps each copy alive for backward;
    a frozen weight can be cast once instead. Weights that train, or already have the dtype, are used as
    stored.
    """

    def __init__(self):
        self._cast: dict[tuple[int, torch.dtype], tuple[int, torch.Tensor, torch.Tensor | None]] = {}

    def weights(self, layer: torch.nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        if layer.weight.requires_grad or layer.weight.dtype == dtype:
            return layer.weight, layer.bias
        # the in-place change counter (private): a weight changed since it was cast (a checkpoint loaded) is
        # cast again; where a torch build lacks it, every call casts, as autocast would
        key, version = (id(layer), dtype), getattr(layer.weight, "_version", None)
        cached = self._cast.get(key)
        if cached is None or version is None or cached[0] != version:
            bias = None if layer.bias is None else layer.bias.detach().to(dtype)
            cached = self._cast[key] = (version, layer.weight.detach().to(dtype), bias)
        return cached[1], cached[2]

    def linear(self, layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """``layer(x)`` in the autocast dtype (x's dtype without autocast), through ``frozen_linear`` on the
        CPU fast path; ``layer(x)`` itself elsewhere."""
        if layer.weight.requires_grad or not cpu_fast_path(x):  # elsewhere autocast casts, as for any layer
            return layer(x)
        weight, bias = self.weights(layer, compute_dtype(x))
        with torch.autocast(x.device.type, enabled=False):
            return frozen_linear(x.to(weight.dtype), weight, bias)

    def clear(self) -> None:
        self._cast.clear()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype an op on x computes in: autocast's where it is on for x's device, else x's own."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def store_frozen_weights_as(layers: list[torch.nn.Linear], dtype: torch.dtype) -> int:
    """Keep the frozen ones of ``layers`` in ``dtype`` only; returns the bytes given back."""
    freed = 0
    for layer in layers:
        if layer.weight.requires_grad or layer.weight.dtype == dtype:
            continue
        before = sum(p.numel() * p.element_size() for p in layer.parameters())
        layer.to(dtype)
        freed += before - sum(p.numel() * p.element_size() for p in layer.parameters())
    return freed
