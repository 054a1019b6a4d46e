"""The training-step benchmark runs end to end on a tiny ViT and reports what the README quotes."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import TINY_AUDIO, TINY_FRAMES, TINY_IMAGE, TINY_VIT

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark_module(script: str = "train_step.py"):
    """A script of benchmarks/ imported as a module (benchmarks/ is no package; the script's sibling modules
    are found as a script finds them, from its own folder)."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, BENCHMARKS / script)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_train_step_benchmark_reports_each_step_against_its_own_peak():
    command = [sys.executable, str(BENCHMARKS / "train_step.py"), "--backbone", TINY_VIT, "--method", "stg_cma",
               "--frames", str(TINY_FRAMES), "--batch", "1", "--image-size", str(TINY_IMAGE),
               "--mel-bins", str(TINY_AUDIO.num_mel_bins), "--audio-frames", str(TINY_AUDIO.num_frames),
               "--warmup", "1", "--steps", "3", "--json"]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout)
    assert len(result["step_s_each"]) == len(result["fraction_of_peak_each"]) == 3
    assert result["fraction_of_peak"] == round(statistics.median(result["fraction_of_peak_each"]), 3)
    assert 0 < result["fraction_of_peak"] < 1
    assert result["gflop_per_step"] > 0 and result["executed_gflop_per_step"] >= result["gflop_per_step"]
    assert result["peak_rss_scope"] == "training steps" and result["peak_rss_mb"] > 0
    assert result["allocator"]["fixed_mmap_threshold"]
    # huge pages as a process gets them when it sets the allocator up first (nothing imported before it may
    # create a tensor: torch reads the switch at the first one); False where the kernel gives none
    probe = "from avadapt.kernels import enable_huge_pages; print(enable_huge_pages())"
    fresh = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                           timeout=120).stdout.split()[-1]
    assert result["allocator"]["huge_pages"] == (fresh == "True")
    # the mean of the same matmuls cannot beat their best, so the fraction of it is the larger one
    assert 0 < result["matmul_mean_gflops"] <= result["matmul_peak_gflops"]
    assert result["fraction_of_mean_matmul"] >= result["fraction_of_peak"]
    # GEMM kernels are part of the profiled step
    assert 0 < result["gemm_s"] < result["profiled_step_s"]
    assert result["gemm_fraction_of_peak"] > 0 and result["fraction_of_peak_if_only_gemms"] > 0
    assert result["cpu_steal_fraction"] is None or 0 <= result["cpu_steal_fraction"] <= 1


def test_cpu_attention_kernel_flops_are_counted():
    train_step = _benchmark_module()
    q = torch.randn(2, 3, 50, 16, requires_grad=True)  # (B, H, N, d)
    counter = FlopCounterMode(display=False, custom_mapping=train_step.CPU_KERNEL_FLOPS)
    with counter:
        F.scaled_dot_product_attention(q, q, q).sum().backward()
    forward = 2 * (2 * 2 * 3 * 50 * 50 * 16)  # QKᵀ and PV, two FLOPs per multiply-add
    assert counter.get_total_flops() == forward + forward * 5 // 2  # backward: five such products


def test_train_step_benchmark_refuses_bf16_on_a_cpu_that_would_emulate_it(monkeypatch, capsys):
    from avadapt import kernels

    train_step = _benchmark_module()
    monkeypatch.setattr(kernels, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(sys, "argv", ["train_step.py", "--backbone", TINY_VIT, "--precision", "bf16"])
    with pytest.raises(SystemExit):
        train_step.main()
    assert "no native bf16 arithmetic" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["frozen_linear.py", "attention_backward.py"])
def test_kernel_benchmarks_refuse_bf16_on_a_cpu_that_would_emulate_it(script, monkeypatch, capsys):
    """Their default is bf16: on a CPU without it, the default command must say why it will not run."""
    from avadapt import kernels

    monkeypatch.setattr(kernels, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(sys, "argv", [script, "--repeats", "1"])
    with pytest.raises(SystemExit):
        _benchmark_module(script).main()
    assert "no native bf16 arithmetic" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])  # frozen_linear takes oneDNN's op in both
def test_frozen_linear_flops_are_counted(dtype):
    """oneDNN's bias-fused linear (avadapt.kernels.frozen_linear) is invisible to FlopCounterMode's own table."""
    from avadapt.kernels import frozen_linear
    from avadapt.kernels.linear import _onednn_linear_available

    train_step = _benchmark_module()
    _onednn_linear_available(dtype)  # its one-time probe is a tiny product of its own, not to be counted here
    x = torch.randn(2, 7, 16).to(dtype).requires_grad_()
    weight, bias = torch.randn(24, 16).to(dtype), torch.randn(24).to(dtype)
    counter = FlopCounterMode(display=False, custom_mapping=train_step.CPU_KERNEL_FLOPS)
    with counter:
        frozen_linear(x, weight, bias).float().sum().backward()
    assert counter.get_total_flops() == 2 * (2 * 2 * 7 * 16 * 24)  # forward, and x's gradient


def test_attention_benchmark_times_both_kernels():
    command = [sys.executable, str(BENCHMARKS / "attention_backward.py"), "--sequences", "2", "--tokens", "9", "5",
               "--repeats", "1", "--json",
               "--allow-emulated-bf16"]  # tiny shapes: quick even where bf16 is emulated
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout)
    assert [row["tokens"] for row in result["rows"]] == [9, 5]
    for row in result["rows"]:
        assert all(row[f"{name}_ms"] > 0 for name in ("plain", "fp32_backward", "packed"))
        assert row["plain_over_packed"] > 0 and row["plain_over_fp32_backward"] > 0


def test_frozen_linear_benchmark_times_both_layers():
    command = [sys.executable, str(BENCHMARKS / "frozen_linear.py"), "--rows", "7", "--repeats", "1", "--json",
               "--allow-emulated-bf16"]  # tiny shapes: quick even where bf16 is emulated
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout)
    assert [(row["rows"], row["layer"]) for row in result["rows"]] == [(7, "qkv"), (7, "proj"), (7, "fc1"),
                                                                       (7, "fc2")]
    assert all(row["plain_ms"] > 0 and row["avadapt_ms"] > 0 for row in result["rows"])
