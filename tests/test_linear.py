"""frozen_linear: F.linear's values and input gradient, oneDNN's bias-fused kernel for bf16 on a CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avadapt.kernels import frozen_linear
from avadapt.kernels.linear import _onednn_linear_available


def _saved(fn) -> list[torch.Tensor]:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        fn()
    return saved


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("block_rows", [512, 16])  # 51 rows in one product, or in four row blocks (bf16 only)
def test_forward_and_input_gradient_match_f_linear_and_only_the_weight_is_kept(dtype, block_rows, monkeypatch):
    from avadapt.kernels import linear

    if not _onednn_linear_available(dtype):
        pytest.skip(f"oneDNN has no {dtype} linear on this CPU")
    monkeypatch.setattr(linear, "BLOCK_ROWS", block_rows)
    assert linear._row_blocks(51, 96, dtype) == (4 if block_rows == 16 and dtype == torch.bfloat16 else 1)
    tolerance = {"rtol": 0.01, "atol": 0.05} if dtype == torch.bfloat16 else {"rtol": 1e-5, "atol": 1e-5}
    torch.manual_seed(0)
    x = torch.randn(3, 17, 64).to(dtype).requires_grad_()
    weight, bias = torch.randn(96, 64).to(dtype), torch.randn(96).to(dtype)
    grad = torch.randn(3, 17, 96).to(dtype)
    out = frozen_linear(x, weight, bias)
    assert "FrozenLinear" in out.grad_fn.name()
    torch.testing.assert_close(out, F.linear(x, weight, bias), **tolerance)
    out.backward(grad)
    torch.testing.assert_close(x.grad, grad @ weight, **tolerance)
    assert [t.data_ptr() for t in _saved(lambda: frozen_linear(x, weight, bias))] == [weight.data_ptr()]
    with torch.no_grad():
        assert frozen_linear(x, weight, bias).grad_fn is None


def test_other_cases_are_plain_f_linear():
    x = torch.randn(5, 8, requires_grad=True)
    weight, bias = torch.randn(4, 8), torch.randn(4)
    out = frozen_linear(x.double(), weight.double(), bias.double())  # a dtype oneDNN's path does not take
    assert "FrozenLinear" not in out.grad_fn.name()
    trainable = torch.randn(4, 8).to(torch.bfloat16).requires_grad_()
    out = frozen_linear(x.detach().to(torch.bfloat16), trainable, bias.to(torch.bfloat16))
    assert "FrozenLinear" not in out.grad_fn.name()
    out.float().sum().backward()
    assert trainable.grad is not None
    for dtype in (torch.float32, torch.bfloat16):
        without_bias = frozen_linear(x.to(dtype), weight.to(dtype), None)
        assert "FrozenLinear" not in without_bias.grad_fn.name()
        torch.testing.assert_close(without_bias, F.linear(x.to(dtype), weight.to(dtype)), rtol=0, atol=0)


def test_row_blocks_only_for_narrow_products_of_middling_height():
    from avadapt.kernels.linear import _row_blocks

    assert _row_blocks(980, 768) == 2 and _row_blocks(1470, 768) == 3  # the audio stream's products
    assert _row_blocks(3940, 768) == 1 and _row_blocks(490, 768) == 1  # video stream, small ones
    assert _row_blocks(980, 2304) == 1  # wide outputs run at full rate as they are
    assert _row_blocks(980, 768, torch.float32) == 1  # fp32 runs whole


def test_a_cpu_without_a_onednn_bf16_kernel_falls_back_to_f_linear(monkeypatch):
    """On an AVX2-only CPU (AMD Zen 3) oneDNN has no bf16 inner product and the op raises; the probe must say
    so and bf16 layers must run as plain F.linear instead of failing."""
    from avadapt.kernels import linear

    def no_bf16_kernel(*args):
        raise RuntimeError("could not create a primitive descriptor for the inner product forward propagation")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", no_bf16_kernel, raising=False)
    linear._onednn_linear_available.cache_clear()
    try:
        assert not linear._onednn_linear_available()
        x = torch.randn(2, 5, 16).to(torch.bfloat16).requires_grad_()
        weight, bias = torch.randn(8, 16).to(torch.bfloat16), torch.randn(8).to(torch.bfloat16)
        out = frozen_linear(x, weight, bias)
        assert "FrozenLinear" not in out.grad_fn.name()
        torch.testing.assert_close(out, F.linear(x, weight, bias))
    finally:
        monkeypatch.undo()
        linear._onednn_linear_available.cache_clear()
