"""``avadapt demo``: a quick miniature here; the full-size run (minutes on 2 cores) is marked slow."""

from __future__ import annotations

import json

import pytest

from avadapt.demo import DemoConfig, run_demo

KEYS = {"test_accuracy", "probe_test_accuracy", "train_seconds", "val_accuracy", "probe_val_accuracy"}


def test_miniature_demo_writes_metrics_and_a_prediction_picture(tmp_path, capsys):
    config = DemoConfig(clips=12, epochs=1, num_classes=2, batch_size=4)
    metrics = run_demo(tmp_path, precision="32-true", config=config)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert KEYS <= set(written) and written["test_accuracy"] == metrics["test_accuracy"]
    assert 0 <= written["test_accuracy"] <= 1 and 0 <= written["probe_test_accuracy"] <= 1
    assert (tmp_path / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "runs" / "stg_cma" / "adapter" / "adapter.safetensors").is_file()
    for method in ("stg_cma", "probe"):  # training curves beside each run's checkpoints
        assert (tmp_path / "runs" / method / "curves.png").read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / "runs" / method / "checkpoints").is_dir()
    out = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" in out and "--model.weights" in out  # says so, and how to use real weights


@pytest.mark.slow
def test_full_demo_beats_the_probe(tmp_path):
    metrics = run_demo(tmp_path)
    assert metrics["test_accuracy"] > metrics["probe_test_accuracy"] + 0.03
