"""``avadapt demo --task avvp`` in miniature: every file and figure it promises (the full run takes minutes)."""

from __future__ import annotations

import json

from avadapt.demo import run_demo
from avadapt.tasks.avvp.demo import AVVPDemo
from avadapt.tasks.avvp.metrics import FIGURES


def test_miniature_avvp_demo_writes_all_ten_figures_a_verdict_and_the_tracks(tmp_path, capsys):
    config = AVVPDemo(clips=10, num_classes=3, epochs=1)
    metrics = run_demo(tmp_path, precision="32-true", config=config)  # the task is the config's
    written = json.loads((tmp_path / "metrics.json").read_text())
    for prefix in ("", "probe_"):
        assert all(0 <= written[f"{prefix}test_{name}"] <= 1 for name in FIGURES)
    assert written["test_segment_type_av"] == metrics["test_segment_type_av"]
    ahead = written["test_segment_type_av"] > written["probe_test_segment_type_av"]
    assert written["verdict"].startswith(f"STG-CMA is {'ahead of' if ahead else 'NOT ahead of'} the probe")
    assert written["verdict"] in capsys.readouterr().out
    assert (tmp_path / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert set(written["prediction"]["f_scores"]) == set(FIGURES)
