"""Residual helpers: one-op stochastic depth, and sums that autograd rebuilds instead of keeping."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath

import avadapt
from avadapt.kernels import rebuilt_in_backward
from avadapt.layers import StochasticDepth


def test_stochastic_depth_draws_and_scales_as_timm_drop_path():
    x, branch = torch.randn(64, 5, 8), torch.randn(64, 5, 8)
    ours = StochasticDepth(0.3).train()
    torch.manual_seed(1)
    got = ours(x, branch)
    torch.manual_seed(1)
    expected = x + DropPath(0.3).train()(branch)
    torch.testing.assert_close(got, expected)
    assert 0 < (got == x).all(dim=(1, 2)).sum() < 64  # some samples dropped, not all
    torch.testing.assert_close(ours.eval()(x, branch), x + branch, rtol=0, atol=0)
    torch.testing.assert_close(StochasticDepth(0.0).train()(x, branch), x + branch, rtol=0, atol=0)
    with pytest.raises(ValueError, match="drop-path rate"):
        StochasticDepth(1.0)


def _layer_norm_of_sum(x, branch, recipe: bool):
    total = x + branch.exp()
    ref = weakref.ref(total)
    if recipe:
        with rebuilt_in_backward(total, lambda: x + branch.exp()):
            out = F.layer_norm(total, total.shape[-1:])
    else:
        out = F.layer_norm(total, total.shape[-1:])
    del total
    gc.collect()
    return out, ref() is not None


@pytest.mark.parametrize("autocast", [False, True])
def test_a_rebuilt_sum_is_not_kept_and_gives_the_same_gradients(autocast):
    grads, kept = [], []
    for recipe in (False, True):
        x = torch.randn(6, 16, generator=torch.Generator().manual_seed(0)).requires_grad_()
        branch = torch.linspace(-1, 1, 16, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, alive = _layer_norm_of_sum(x, branch, recipe)
        (out * torch.arange(16.0)).sum().backward()
        grads.append((x.grad, branch.grad))
        kept.append(alive)
    assert kept == [True, False]  # the layer norm kept the sum only without the recipe
    for plain, rebuilt in zip(*grads):
        torch.testing.assert_close(rebuilt, plain, rtol=0, atol=0)


def test_stg_cma_gradients_do_not_change_when_sums_are_rebuilt(tiny_options, random_inputs):
    """Train mode, drop path on: the recipes redo the temporal sums with the forward's own masks."""
    torch.manual_seed(0)
    model = avadapt.create_model(method="stg_cma", drop_path=0.5, **tiny_options).train()
    with torch.no_grad():  # non-zero adapters so that the rebuilt sums differ from the block inputs
        for p in model.trainable_parameters():
            p.normal_(std=0.05)
    video, audio = random_inputs()
    grads = []
    for rebuild in (False, True):
        for block in model.method.blocks:
            block.rebuild_sums_in_backward = rebuild
        torch.manual_seed(3)
        model.zero_grad()
        model(video, audio).square().mean().backward()
        grads.append([p.grad.clone() for p in model.trainable_parameters()])
    for plain, rebuilt in zip(*grads):
        torch.testing.assert_close(rebuilt, plain, rtol=1e-6, atol=1e-7)
