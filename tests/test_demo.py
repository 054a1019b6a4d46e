"""``avadapt demo``: a quick miniature here; the full-size run (minutes on 2 cores) is marked slow."""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from pathlib import Path

import pytest

from avadapt.adapter_files import RandomBackboneWarning
from avadapt.cli import main
from avadapt.demo import run_demo
from avadapt.errors import OptionError
from avadapt.tasks.ave.demo import AVEDemo
from avadapt.tasks.avs.demo import AVSDemo
from avadapt.tasks.demo_spec import DEMOS

KEYS = {"test_accuracy", "probe_test_accuracy", "train_seconds", "val_accuracy", "probe_val_accuracy"}


def test_miniature_demo_writes_metrics_and_a_prediction_picture(tmp_path, capsys, monkeypatch):
    config = AVEDemo(clips=12, epochs=1, num_classes=2, batch_size=4)
    monkeypatch.chdir(tmp_path)
    metrics = run_demo("demo_out", precision="32-true", config=config)  # a folder named relative to here
    out = tmp_path / "demo_out"
    written = json.loads((out / "metrics.json").read_text())
    assert KEYS <= set(written) and written["test_accuracy"] == metrics["test_accuracy"]
    assert 0 <= written["test_accuracy"] <= 1 and 0 <= written["probe_test_accuracy"] <= 1
    assert (out / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "runs" / "stg_cma" / "adapter" / "adapter.safetensors").is_file()
    for method in ("stg_cma", "probe"):  # training curves beside each run's checkpoints
        assert (out / "runs" / method / "curves.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "runs" / method / "checkpoints").is_dir()
    printed = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" in printed and "--model.weights" in printed  # says so, and how to use real weights
    _predict_from_elsewhere(out, tmp_path / "elsewhere", monkeypatch, capsys)


def _predict_from_elsewhere(out: Path, elsewhere: Path, monkeypatch, capsys) -> None:
    """``avadapt predict`` with the demo's adapter from another folder sits on the demo's backbone file."""
    adapter = out / "runs" / "stg_cma" / "adapter"
    source = json.loads((adapter / "config.json").read_text())["backbone_source"]
    assert source["weights"] == str((out / "random_backbone.safetensors").resolve())
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    video = min((out / "ave" / "AVE").glob("*.mp4"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomBackboneWarning)
        main(["predict", str(video), "--adapter", str(adapter), "--out", "prediction"])
    assert json.loads((elsewhere / "prediction.json").read_text())["seconds"] > 0
    assert "wrote prediction.json" in capsys.readouterr().out


def _last_logged(metrics_csv, name: str) -> float:
    with metrics_csv.open(newline="") as file:
        return [float(row[name]) for row in csv.DictReader(file) if row.get(name)][-1]


def test_miniature_demo_over_two_seeds_reports_the_spread(tmp_path, capsys):
    config = AVEDemo(clips=12, epochs=1, num_classes=2, batch_size=4)
    metrics = run_demo(tmp_path, precision="32-true", config=config, seeds=2)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["seeds"]["seeds"] == [0, 1]
    spread = written["seeds"]["metrics"]
    for method, prefix in (("stg_cma", ""), ("probe", "probe_")):
        values = [_last_logged(tmp_path / "runs" / f"seed_{seed}" / method / "logs" / "metrics.csv", "test/accuracy")
                  for seed in (0, 1)]
        mean = sum(values) / 2
        std = math.sqrt(sum((value - mean) ** 2 for value in values) / (2 - 1))
        entry = spread[f"{prefix}test_accuracy"]
        assert entry["values"] == pytest.approx(values, abs=1e-4)  # metrics.json rounds to 4 places
        assert entry["mean"] == pytest.approx(mean, abs=1e-4) and entry["std"] == pytest.approx(std, abs=1e-4)
        assert written[f"{prefix}test_accuracy"] == pytest.approx(values[0], abs=1e-4)  # the first seed's run
        for seed in (0, 1):
            cost = json.loads((tmp_path / "runs" / f"seed_{seed}" / method / "cost.json").read_text())
            assert cost["train_steps"] > 0 and cost["precision"] == "32-true"
    assert {"val_accuracy", "train_seconds", "probe_val_accuracy"} <= set(spread)
    assert metrics["seeds"] == written["seeds"]
    assert "mean ± sample std" in capsys.readouterr().out


def test_miniature_avs_demo_compares_three_runs_and_draws_masks(tmp_path, capsys):
    metrics = run_demo(tmp_path, task="avs", precision="32-true", config=AVSDemo(clips=12, epochs=1))
    written = json.loads((tmp_path / "metrics.json").read_text())
    for prefix in ("", "visual_only_", "probe_"):
        for key in ("test_miou", "test_fscore", "val_miou", "train_seconds", "trainable_parameters"):
            assert prefix + key in written, prefix + key
        assert 0 <= written[prefix + "test_miou"] <= 1
    assert written["test_miou"] == metrics["test_miou"]
    # the visual-only branch drops the audio stream's modules; the probe trains its decoder only
    assert written["probe_trainable_parameters"] < written["visual_only_trainable_parameters"] \
        < written["trainable_parameters"]
    assert set(written["curves"]) == {"stg_cma", "stg_cma_visual_only", "probe"}
    assert (tmp_path / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert written["prediction"]["video"].endswith("prediction_input.mp4")
    out = capsys.readouterr().out
    assert "avadapt demo --task avs" in out and "RANDOMLY INITIALISED" in out and "5/5" in out


def test_unknown_demo_lists_the_demos():
    assert {"avar", "ave", "avqa", "avs", "avvp"} <= set(DEMOS.names())
    with pytest.raises(OptionError, match=re.escape(f"unknown demo 'nope'; known: {', '.join(DEMOS.names())}")):
        run_demo("unused", task="nope")
    with pytest.raises(OptionError, match="AVSDemo"):
        run_demo("unused", task="ave", config=AVSDemo())


@pytest.mark.slow
def test_full_demo_beats_the_probe(tmp_path):
    metrics = run_demo(tmp_path)
    assert metrics["test_accuracy"] > metrics["probe_test_accuracy"] + 0.03
