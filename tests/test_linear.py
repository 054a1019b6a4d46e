"""frozen_linear: F.linear's values and input gradient, oneDNN's bias-fused kernel for bf16 on a CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avadapt.layers import frozen_linear
from avadapt.layers.linear import _onednn_linear_available


def _saved(fn) -> list[torch.Tensor]:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        fn()
    return saved


@pytest.mark.skipif(not _onednn_linear_available(), reason="this torch build has no oneDNN linear")
@pytest.mark.parametrize("block_rows", [512, 16])  # 51 rows in one product, or in four row blocks
def test_bf16_forward_and_input_gradient_match_f_linear_and_only_the_weight_is_kept(block_rows, monkeypatch):
    from avadapt.layers import linear

    monkeypatch.setattr(linear, "BLOCK_ROWS", block_rows)
    assert linear._row_blocks(51, 96) == (1 if block_rows == 512 else 4)
    torch.manual_seed(0)
    x = torch.randn(3, 17, 64).to(torch.bfloat16).requires_grad_()
    weight, bias = torch.randn(96, 64).to(torch.bfloat16), torch.randn(96).to(torch.bfloat16)
    grad = torch.randn(3, 17, 96).to(torch.bfloat16)
    out = frozen_linear(x, weight, bias)
    assert "FrozenLinear" in out.grad_fn.name()
    torch.testing.assert_close(out, F.linear(x, weight, bias), rtol=0.01, atol=0.05)
    out.backward(grad)
    torch.testing.assert_close(x.grad, grad @ weight, rtol=0.01, atol=0.05)
    assert [t.data_ptr() for t in _saved(lambda: frozen_linear(x, weight, bias))] == [weight.data_ptr()]
    with torch.no_grad():
        assert frozen_linear(x, weight, bias).grad_fn is None


def test_other_cases_are_plain_f_linear():
    x = torch.randn(5, 8, requires_grad=True)
    weight, bias = torch.randn(4, 8), torch.randn(4)
    torch.testing.assert_close(frozen_linear(x, weight, bias), F.linear(x, weight, bias), rtol=0, atol=0)
    trainable = torch.randn(4, 8).to(torch.bfloat16).requires_grad_()
    out = frozen_linear(x.detach().to(torch.bfloat16), trainable, bias.to(torch.bfloat16))
    assert "FrozenLinear" not in out.grad_fn.name()
    out.float().sum().backward()
    assert trainable.grad is not None
    without_bias = frozen_linear(x.to(torch.bfloat16), weight.to(torch.bfloat16), None)
    assert "FrozenLinear" not in without_bias.grad_fn.name()


def test_row_blocks_only_for_narrow_products_of_middling_height():
    from avadapt.layers.linear import _row_blocks

    assert _row_blocks(980, 768) == 2 and _row_blocks(1470, 768) == 3  # the audio stream's products
    assert _row_blocks(3940, 768) == 1 and _row_blocks(490, 768) == 1  # video stream, small ones
    assert _row_blocks(980, 2304) == 1  # wide outputs run at full rate as they are


def test_a_cpu_without_a_onednn_bf16_kernel_falls_back_to_f_linear(monkeypatch):
    """On an AVX2-only CPU (AMD Zen 3) oneDNN has no bf16 inner product and the op raises; the probe must say
    so and bf16 layers must run as plain F.linear instead of failing."""
    from avadapt.layers import linear

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
