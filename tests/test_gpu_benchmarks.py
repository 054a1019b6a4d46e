"""The GPU check script and the prediction throughput benchmark: what they do without a GPU, and the
throughput report's arithmetic on a tiny model (timings are never checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import TINY_AUDIO, TINY_IMAGE, TINY_VIT
from tests.test_benchmarks import BENCHMARKS, _benchmark_module

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@no_cuda
def test_gpu_check_refuses_without_cuda(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), str(out)], check=False,
                          capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr
    assert not out.exists()


@no_cuda
@pytest.mark.parametrize("script", ["train_step.py", "predict_throughput.py"])
def test_benchmarks_refuse_cuda_without_a_device(script, monkeypatch, capsys):
    module = _benchmark_module(script)
    monkeypatch.setattr(sys, "argv", [script, "--device", "cuda"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 2
    assert "--device cuda: torch sees no CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_throughput_report_on_a_tiny_model():
    """One 12 s video (windows at 0 s and 2 s of AVE's 10-segment windows) against three 4 s ones (one padded
    window each): 12 s of video each, and 3/2 the FLOPs for the short ones."""
    command = [sys.executable, str(BENCHMARKS / "predict_throughput.py"), "--backbone", TINY_VIT,
               "--backbone-option", f"img_size={TINY_IMAGE}", "--fbank-option",
               f"num_mel_bins={TINY_AUDIO.num_mel_bins}", "--fbank-option", f"target_frames={TINY_AUDIO.num_frames}",
               "--precision", "32", "--long-seconds", "12", "--short-videos", "3", "--short-seconds", "4",
               "--video-size", "32", "48", "--json"]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout)
    long, short = report["runs"]
    assert (long["inputs"], long["videos"], short["inputs"], short["videos"]) == (
        "one long video", 1, "many short videos", 3)
    assert long["video_s"] == short["video_s"] == 12
    assert short["gflop"] == pytest.approx(1.5 * long["gflop"], rel=0.02)
    for run in report["runs"]:
        assert run["minutes_per_hour_of_video"] == pytest.approx(60 / run["video_s_per_s"], rel=0.02)
        assert run["fraction_of_peak"] == pytest.approx(
            run["achieved_gflops"] / run["matmul_peak_gflops"], rel=0.05, abs=2e-3)
