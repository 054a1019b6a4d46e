"""Attention with an fp32 CPU backward for bf16 inputs: the same forward, fp32-grade gradients, no extra memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avadapt.kernels import scaled_dot_product_attention
from avadapt.layers import parameter_free_cross_attention


def _inputs(shape_q, shape_kv, dtype=torch.bfloat16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    make = lambda shape: torch.randn(shape, generator=generator).to(dtype).requires_grad_()
    return make(shape_q), make(shape_kv), make(shape_kv)


def _grads(attention, q, k, v, grad_out):
    for t in (q, k, v):
        t.grad = None
    out = attention(q, k, v)
    out.backward(grad_out)
    return out.detach(), [t.grad.clone() for t in (q, k, v)]


def _graph_names(tensor, depth: int = 2) -> list[str]:
    """Names of the autograd nodes within ``depth`` steps of tensor (3-D inputs add a view node on top)."""
    nodes, names = [tensor.grad_fn], []
    for _ in range(depth):
        names += [node.name() for node in nodes]
        nodes = [parent for node in nodes for parent, _ in node.next_functions if parent is not None]
    return names


def _saved_bytes(fn) -> int:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        fn()
    unique = {(t.data_ptr(), t.dtype, t.shape): t for t in saved}
    return sum(t.numel() * t.element_size() for t in unique.values())


@pytest.mark.parametrize(("shape_q", "shape_kv"), [((2, 3, 49, 16), (2, 3, 49, 16)), ((4, 37, 8), (4, 11, 8))])
def test_bf16_forward_is_the_plain_kernels_and_gradients_are_as_close_to_fp32(shape_q, shape_kv):
    q, k, v = _inputs(shape_q, shape_kv)
    grad_out = torch.randn(shape_q[:-1] + (shape_kv[-1],), generator=torch.Generator().manual_seed(1)).to(
        torch.bfloat16)
    scale = 0.3
    plain_out, plain_grads = _grads(lambda *a: F.scaled_dot_product_attention(*a, scale=scale), q, k, v, grad_out)
    out, grads = _grads(lambda *a: scaled_dot_product_attention(*a, scale=scale), q, k, v, grad_out)
    torch.testing.assert_close(out, plain_out, rtol=0, atol=0)
    assert "Fp32Backward" in " ".join(_graph_names(scaled_dot_product_attention(q, k, v, scale=scale)))
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    _, reference = _grads(lambda *a: F.scaled_dot_product_attention(*a, scale=scale), q32, k32, v32,
                          grad_out.float())
    for ours, plain, exact in zip(grads, plain_grads, reference):
        assert ours.dtype == torch.bfloat16
        # the error norms, not the largest element: that one flipped between the two on other inputs
        assert (ours.float() - exact).norm() < (plain.float() - exact).norm()
        assert (ours.float() - exact).abs().max() <= 0.02 * exact.abs().max()


def test_fp32_no_grad_and_5d_calls_are_the_plain_kernel():
    q, k, v = _inputs((2, 3, 20, 8), (2, 3, 20, 8), dtype=torch.float32)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v),
                               rtol=0, atol=0)
    q, k, v = _inputs((2, 3, 20, 8), (2, 3, 20, 8))
    with torch.no_grad():
        out = scaled_dot_product_attention(q, k, v)
    assert out.grad_fn is None
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v).detach(), rtol=0, atol=0)
    q, k, v = _inputs((2, 2, 3, 20, 8), (2, 2, 3, 20, 8))  # more leading dimensions than the kernel takes
    out = scaled_dot_product_attention(q, k, v)
    assert "Fp32Backward" not in " ".join(_graph_names(out))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)


def test_keeps_no_more_for_backward_than_the_plain_call():
    q, k, v = _inputs((2, 4, 64, 16), (2, 4, 64, 16))
    ours = _saved_bytes(lambda: scaled_dot_product_attention(q, k, v))
    plain = _saved_bytes(lambda: F.scaled_dot_product_attention(q, k, v))
    assert 0 < ours <= plain


def test_cross_modal_attention_under_autocast_has_the_gradients_of_the_formula():
    """bf16 inputs under autocast: the gradients are those of softmax(v aᵀ) a in float64 on the same
    (bf16-rounded) inputs, to bf16 accuracy."""
    generator = torch.Generator().manual_seed(0)
    video, audio = (torch.randn(3, n, 6, generator=generator).requires_grad_() for n in (17, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = parameter_free_cross_attention(video.to(torch.bfloat16), audio.to(torch.bfloat16))
    assert out.shape == (3, 17, 6) and out.dtype == torch.bfloat16
    out.float().sum().backward()
    video64, audio64 = (t.detach().to(torch.bfloat16).double().requires_grad_() for t in (video, audio))
    (torch.softmax(video64 @ audio64.transpose(1, 2), dim=-1) @ audio64).sum().backward()
    for ours, exact in ((video.grad, video64.grad), (audio.grad, audio64.grad)):
        assert (ours.double() - exact).abs().max() <= 0.03 * exact.abs().max()


@pytest.mark.parametrize("tile_bytes", [200, 4 << 20])  # a few sequences per tile, or all in one
def test_packed_bf16_attention_backward_is_the_gradient_of_its_forward(tile_bytes, monkeypatch):
    from avadapt.kernels import attention
    from avadapt.kernels.attention import _PackedBf16Attention

    monkeypatch.setattr(attention, "SCORES_BYTES_AT_ONCE", tile_bytes)
    torch.manual_seed(0)
    qkv = torch.randn(3, 5, 3, 2, 4, dtype=torch.float64, requires_grad=True)  # (S, N, 3, H, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    plain = F.scaled_dot_product_attention(q, k, v, scale=0.5).transpose(1, 2).reshape(3, 5, 8)
    torch.testing.assert_close(_PackedBf16Attention.apply(qkv, 0.5), plain)
    assert torch.autograd.gradcheck(lambda x: _PackedBf16Attention.apply(x, 0.5), (qkv,))


def test_packed_attention_in_bf16_is_close_to_fp32_and_keeps_only_qkv():
    from avadapt.kernels.attention import packed_self_attention

    torch.manual_seed(0)
    exact_qkv = torch.randn(4, 49, 3, 2, 16, requires_grad=True)
    grad_out = torch.randn(4, 49, 32)
    q, k, v = exact_qkv.permute(2, 0, 3, 1, 4).unbind(0)
    exact = F.scaled_dot_product_attention(q, k, v, scale=0.25).transpose(1, 2).reshape(4, 49, 32)
    exact.backward(grad_out)
    qkv = exact_qkv.detach().to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the function turns autocast off inside
        out = packed_self_attention(qkv, 0.25)
    assert out.dtype == torch.bfloat16 and "PackedBf16" in out.grad_fn.name()
    out.backward(grad_out.to(torch.bfloat16))
    assert (out.float() - exact).abs().max() <= 0.02 * exact.abs().max()
    assert (qkv.grad.float() - exact_qkv.grad).abs().max() <= 0.02 * exact_qkv.grad.abs().max()
    assert _saved_bytes(lambda: packed_self_attention(qkv, 0.25)) == qkv.numel() * qkv.element_size()
    with torch.no_grad():  # fp32 takes the fused kernel
        torch.testing.assert_close(packed_self_attention(exact_qkv, 0.25), exact)


def test_cross_modal_attention_is_the_unscaled_softmax_formula_at_every_precision():
    generator = torch.Generator().manual_seed(2)
    video, audio = (torch.randn(3, n, 6, generator=generator, dtype=torch.float64) * 2 for n in (17, 5))
    exact = torch.softmax(video @ audio.transpose(1, 2), dim=-1) @ audio  # no 1/sqrt(d)
    torch.testing.assert_close(parameter_free_cross_attention(video, audio), exact, rtol=0, atol=1e-12)
    fp32 = parameter_free_cross_attention(video.float(), audio.float())
    torch.testing.assert_close(fp32.double(), exact, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in fp32 inside, rounded once at the end
        low = parameter_free_cross_attention(video.to(torch.bfloat16), audio.to(torch.bfloat16))
    rounded_inputs = (video.to(torch.bfloat16).double(), audio.to(torch.bfloat16).double())
    exact_on_rounded = torch.softmax(rounded_inputs[0] @ rounded_inputs[1].transpose(1, 2), -1) @ rounded_inputs[1]
    torch.testing.assert_close(low.double(), exact_on_rounded, rtol=2 ** -8, atol=2 ** -8 * exact.abs().max().item())
