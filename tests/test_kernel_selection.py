"""The CPU fast paths of ``avadapt.kernels`` run for CPU tensors only; elsewhere the model runs plain PyTorch.

A custom ``torch.autograd.Function`` leaves a ``BackwardCFunction`` node in the graph, so the graph itself
says which path a forward took, independently of the selection code under test.
"""

from __future__ import annotations

import pytest
import torch

from avadapt import kernels
from avadapt.kernels import recompute
from tests.zoo import backbone_weights, build, inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def custom_functions(output: torch.Tensor) -> set[str]:
    """The names of the custom autograd Functions in output's backward graph."""
    seen, stack, found = set(), [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return found


def adapted_stg_cma(seed: int = 0) -> torch.nn.Module:
    """A tiny STG-CMA model whose up-projections and gates are non-zero, so every adapter changes the output."""
    backbone_weights("vit", seed)  # written first, so that writing it draws nothing from the model's seed
    model = build("vit", "stg_cma", seed=seed).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.method.parameters():
            if p.requires_grad and not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def test_selection_by_device():
    cpu, meta = torch.ones(2), torch.ones(2, device="meta")
    assert kernels.cpu_fast_path(cpu, None, cpu)
    assert not kernels.cpu_fast_path(meta)
    assert not kernels.cpu_fast_path(cpu, meta)
    with kernels.plain_pytorch():
        assert not kernels.cpu_fast_path(cpu)
        with kernels.plain_pytorch():
            assert not kernels.cpu_fast_path(cpu)
        assert not kernels.cpu_fast_path(cpu)
    assert kernels.cpu_fast_path(cpu)


def test_non_cpu_device_runs_plain_pytorch(monkeypatch):
    """On meta tensors (standing for any non-CPU device) forward and backward use no custom Function and no
    saved-tensor rebuilding; the kernels' own linear and attention calls are the plain ones."""
    def refuse(*args, **kwargs):
        raise AssertionError("a CPU fast path ran on a non-CPU tensor")

    monkeypatch.setattr(recompute, "_Recipe", refuse)
    model = adapted_stg_cma().to("meta")
    video, audio = (x.to("meta") for x in inputs(model))
    out = model(video.requires_grad_(), audio.requires_grad_())
    assert out.device.type == "meta"
    assert custom_functions(out) == set()
    out.sum().backward()
    assert video.grad is not None and video.grad.shape == video.shape
    assert all(p.grad is not None for p in model.trainable_parameters())


def forward_and_gradients(model, video, audio, autocast: bool):
    """Output, the custom Functions it went through, and the gradients of a fixed random projection of it
    with respect to the trainable parameters and both inputs."""
    model.zero_grad(set_to_none=True)
    video, audio = video.clone().requires_grad_(), audio.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(video, audio)
    functions = custom_functions(out)
    out = out.float()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * weights).sum().backward()
    grads = [p.grad.clone() for p in model.trainable_parameters()] + [video.grad, audio.grad]
    return out.detach(), functions, grads


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def test_fast_and_plain_paths_agree_on_cpu_fp32():
    """Forced plain PyTorch against the CPU fast paths: the same outputs and gradients for STG-CMA in fp32
    (the fused projections, W_down·W_proj, change only the rounding)."""
    model = adapted_stg_cma()
    video, audio = inputs(model)
    fast_out, fast_functions, fast_grads = forward_and_gradients(model, video, audio, autocast=False)
    with kernels.plain_pytorch():
        plain_out, plain_functions, plain_grads = forward_and_gradients(model, video, audio, autocast=False)
    assert plain_functions == set()
    assert {"_ShortAttentionThenLinearBackward", "_ActivationThenTwoLinearsBackward"} <= fast_functions
    assert relative_error(fast_out, plain_out) < 1e-5
    assert len(fast_grads) == len(plain_grads) == len(model.trainable_parameters()) + 2
    for fast, plain in zip(fast_grads, plain_grads):
        assert relative_error(fast, plain) < 1e-4


@pytest.mark.skipif(not kernels.cpu_supports_bf16(), reason="this CPU has no native bf16 arithmetic: emulated "
                    "bf16 matmuls are hundreds of times slower than fp32")
def test_fast_and_plain_paths_agree_on_cpu_bf16():
    """Under bf16 autocast both paths round at every matmul, in different places (the fast path keeps fused
    weights in bf16): each is compared with the fp32 plain path and must be about as close to it as the
    other. A small gradient (a scalar gate's, a sum of cancelling products) can be off by tens of per cent on
    either, so those count in the comparison of all gradients together only."""
    model = adapted_stg_cma()
    video, audio = inputs(model)
    with kernels.plain_pytorch():
        reference_out, _, reference_grads = forward_and_gradients(model, video, audio, autocast=False)
        plain_out, plain_functions, plain_grads = forward_and_gradients(model, video, audio, autocast=True)
    fast_out, fast_functions, fast_grads = forward_and_gradients(model, video, audio, autocast=True)
    assert plain_functions == set()
    assert {"_ShortAttentionThenLinearBackward", "_PackedBf16AttentionBackward"} <= fast_functions
    plain_error = relative_error(plain_out, reference_out)
    assert 0 < relative_error(fast_out, reference_out) < 1.5 * plain_error + 1e-3
    for fast, plain, reference in zip(fast_grads, plain_grads, reference_grads):
        if reference.numel() >= 64:
            assert relative_error(fast, reference) < 0.05
            assert relative_error(plain, reference) < 0.05
    everything = [torch.cat([g.flatten() for g in grads]) for grads in (fast_grads, plain_grads, reference_grads)]
    assert relative_error(everything[0], everything[2]) < 1.5 * relative_error(everything[1], everything[2])


def compiled_against_eager(backend: bool | str) -> None:
    """The tiny STG-CMA model built with ``compile_backbone=backend`` against the same model run eagerly:
    equal outputs and gradients, none of the kernels' custom Functions traced (the plain path), unchanged
    parameter names."""
    backbone_weights("vit", 0)
    eager = adapted_stg_cma()
    compiled = build("vit", "stg_cma", compile_backbone=backend).eval()
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())
    video, audio = inputs(eager)
    eager_out, _, eager_grads = forward_and_gradients(eager, video, audio, autocast=False)
    compiled_out, functions, compiled_grads = forward_and_gradients(compiled, video, audio, autocast=False)
    assert functions <= {"CompiledFunctionBackward"}  # the compiler's own graph, none of avadapt.kernels'
    assert relative_error(compiled_out, eager_out) < 1e-5
    for ours, reference in zip(compiled_grads, eager_grads):
        assert relative_error(ours, reference) < 1e-4


def test_compiled_backbone_traces_the_plain_path():
    """torch.compile's ``eager`` backend traces without generating code: quick, and what is traced is what
    any backend compiles."""
    compiled_against_eager("eager")


@pytest.mark.slow
def test_compiled_backbone_with_the_default_backend():
    """Inductor generates and builds C++ for the CPU: minutes on a small machine, so marked slow."""
    compiled_against_eager(True)


def test_compile_backbone_refuses_an_unknown_backend():
    from avadapt.errors import OptionError

    with pytest.raises(OptionError, match="compile_backbone='no_such_backend'.*inductor"):
        build("vit", "stg_cma", compile_backbone="no_such_backend")
