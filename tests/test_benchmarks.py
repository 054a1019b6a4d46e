"""The benchmark scripts: their reports, the FLOPs they count, and their refusal of emulated bf16.

Timings are never checked: the scripts' arithmetic is, with times the test fixes. Runs of the scripts as
their own processes are marked slow."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


@pytest.mark.slow
def test_train_step_benchmark_reports_each_step_against_its_own_peak():
    """The script end to end in its own process. Its timings vary from run to run and are not checked;
    what is: the report's shape, its counts, and the relations its figures hold by construction."""
    import avadapt

    command = [sys.executable, str(BENCHMARKS / "train_step.py"), "--backbone", TINY_VIT, "--method", "stg_cma",
               "--frames", str(TINY_FRAMES), "--batch", "1", "--image-size", str(TINY_IMAGE),
               "--mel-bins", str(TINY_AUDIO.num_mel_bins), "--audio-frames", str(TINY_AUDIO.num_frames),
               "--warmup", "1", "--steps", "3", "--json"]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout)
    assert (result["method"], result["frames"], result["batch"], result["precision"]) == (
        "stg_cma", TINY_FRAMES, 1, "32")
    model = avadapt.create_model(backbone=TINY_VIT, method="stg_cma", task="ave", num_frames=TINY_FRAMES,
                                 backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO})
    assert result["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert len(result["step_s_each"]) == len(result["fraction_of_peak_each"]) == 3
    assert result["fraction_of_peak"] == round(statistics.median(result["fraction_of_peak_each"]), 3)
    # FLOPs are counted, not timed: the step's work is there, and recomputation only adds to it
    assert result["gflop_per_step"] > 0 and result["executed_gflop_per_step"] >= result["gflop_per_step"]
    assert result["peak_rss_scope"] == "training steps"
    assert result["allocator"]["fixed_mmap_threshold"]
    # huge pages as a process gets them when it sets the allocator up first (nothing imported before it may
    # create a tensor: torch reads the switch at the first one); False where the kernel gives none
    probe = "from avadapt.kernels import enable_huge_pages; print(enable_huge_pages())"
    fresh = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                           timeout=120).stdout.split()[-1]
    assert result["allocator"]["huge_pages"] == (fresh == "True")
    # the mean of the same matmuls cannot beat their best, so the fraction of it is the larger one
    assert result["matmul_mean_gflops"] <= result["matmul_peak_gflops"]
    assert result["fraction_of_mean_matmul"] >= result["fraction_of_peak"]
    # GEMM kernels are part of the profiled step; steal is a share of the machine's CPU time
    assert result["gemm_s"] <= result["profiled_step_s"]
    assert result["cpu_steal_fraction"] is None or 0 <= result["cpu_steal_fraction"] <= 1


def test_kernel_timing_times_each_function_in_turns_after_two_warm_up_calls(monkeypatch):
    """median_seconds with a clock the test moves: warm-up calls are not timed, the turns alternate."""
    kernel_timing = _benchmark_module("kernel_timing.py")
    now, calls = [0.0], []

    def taking(name: str, seconds: list[float]):
        durations = iter(seconds)

        def call() -> None:
            calls.append(name)
            now[0] += next(durations)

        return call

    monkeypatch.setattr(kernel_timing, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    first = taking("a", [100.0, 100.0, 3.0, 1.0, 2.0])  # two slow warm-up calls, then 3, 1, 2: median 2
    second = taking("b", [50.0, 50.0, 5.0, 9.0, 7.0])  # median 7
    assert kernel_timing.median_seconds([first, second], repeats=3) == [2.0, 7.0]
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3


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


def _run_with_fixed_times(script: str, seconds: list[float], argv: list[str], monkeypatch, capsys) -> dict:
    """The script's JSON report when every kernel runs once for real and ``median_seconds`` says ``seconds``."""
    module = _benchmark_module(script)
    runs = []

    def fixed_times(fns, repeats):
        for fn in fns:  # each kernel's forward and backward really run
            fn()
        runs.append(len(fns))
        return seconds

    monkeypatch.setattr(module, "median_seconds", fixed_times)
    monkeypatch.setattr(module, "enable_huge_pages", lambda: None)  # leave this process's allocator alone
    monkeypatch.setattr(sys, "argv", [script, "--precision", "32", "--repeats", "1", "--json", *argv])
    module.main()
    return {"runs": runs, **json.loads(capsys.readouterr().out)}


def test_attention_benchmark_rows_are_the_kernel_times_and_their_ratios(monkeypatch, capsys):
    seconds = [0.004, 0.002, 0.0005]  # plain, fp32_backward, packed
    result = _run_with_fixed_times("attention_backward.py", seconds, ["--sequences", "2", "--tokens", "9", "5"],
                                   monkeypatch, capsys)
    assert result["runs"] == [3, 3] and result["sequences"] == 2 and result["precision"] == "32"
    row = {"plain_ms": 4.0, "fp32_backward_ms": 2.0, "packed_ms": 0.5, "plain_over_fp32_backward": 2.0,
           "plain_over_packed": 8.0}
    assert result["rows"] == [{"tokens": 9, **row}, {"tokens": 5, **row}]


def test_frozen_linear_benchmark_rows_are_the_layer_times_and_their_ratio(monkeypatch, capsys):
    result = _run_with_fixed_times("frozen_linear.py", [0.003, 0.002], ["--rows", "7"],  # plain, avadapt
                                   monkeypatch, capsys)
    assert result["runs"] == [2] * 4
    row = {"rows": 7, "plain_ms": 3.0, "avadapt_ms": 2.0, "plain_over_avadapt": 1.5}
    assert result["rows"] == [{**row, "layer": layer} for layer in ("qkv", "proj", "fc1", "fc2")]


@pytest.mark.slow
def test_attention_benchmark_times_both_kernels():
    command = [sys.executable, str(BENCHMARKS / "attention_backward.py"), "--sequences", "2", "--tokens", "9", "5",
               "--repeats", "1", "--json",
               "--allow-emulated-bf16"]  # tiny shapes: quick even where bf16 is emulated
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout)
    assert (result["precision"], result["sequences"]) == ("bf16", 2)
    assert [row["tokens"] for row in result["rows"]] == [9, 5]
    for row in result["rows"]:
        assert set(row) == {"tokens", "plain_ms", "fp32_backward_ms", "packed_ms", "plain_over_fp32_backward",
                            "plain_over_packed"}


@pytest.mark.slow
def test_frozen_linear_benchmark_times_both_layers():
    command = [sys.executable, str(BENCHMARKS / "frozen_linear.py"), "--rows", "7", "--repeats", "1", "--json",
               "--allow-emulated-bf16"]  # tiny shapes: quick even where bf16 is emulated
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout)
    assert result["precision"] == "bf16"
    assert [(row["rows"], row["layer"]) for row in result["rows"]] == [(7, "qkv"), (7, "proj"), (7, "fc1"),
                                                                       (7, "fc2")]
    for row in result["rows"]:
        assert set(row) == {"rows", "layer", "plain_ms", "avadapt_ms", "plain_over_avadapt"}


def test_demo_sweep_reads_each_setting_as_a_name_and_json_options():
    sweep = _benchmark_module("demo_sweep.py")
    assert sweep.parse_setting('lr x10={"prompt_lr_factor": 10}') == ("lr x10", {"prompt_lr_factor": 10})
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=JSON"):
        sweep.parse_setting("no options")


def test_realmedia_ablation_rows_switch_the_prompt_types_they_name():
    ablation = _benchmark_module("realmedia_ablation.py")
    options = {"prompt_lr_factor": 3, "temporal_prompts": True}
    for row, kinds in {"none": set(), "spatial": {"spatial"}, "temporal+fusion": {"temporal", "fusion"},
                       "all": {"temporal", "spatial", "fusion"}}.items():
        run = ablation.row_run(row, options)
        assert run.method_name == "av_stfp" and run.method_options["prompt_lr_factor"] == 3
        assert {k for k in ("temporal", "spatial", "fusion") if run.method_options[f"{k}_prompts"]} == kinds
    assert ablation.row_run("probe", options).method_options == {}
    assert ablation.row_run("stg_cma", options).method_options == {"ratio": "1/4", "drop_path": 0.0}


def test_realmedia_ablation_names_a_missing_input(tmp_path, monkeypatch):
    ablation = _benchmark_module("realmedia_ablation.py")
    monkeypatch.setattr(sys, "argv", ["realmedia_ablation.py", "--root", str(tmp_path), "--cache", str(tmp_path),
                                      "--weights", str(tmp_path / "backbone.safetensors"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="Annotations.txt not found"):
        ablation.main()
