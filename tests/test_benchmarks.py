"""The training-step benchmark runs end to end on a tiny ViT and reports what the README quotes."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_AUDIO, TINY_FRAMES, TINY_IMAGE, TINY_VIT

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


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
