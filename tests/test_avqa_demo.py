"""``avadapt demo --task avqa`` in miniature: every file and figure it promises (the full run takes minutes)."""

from __future__ import annotations

import json

from avadapt.demo import run_demo
from avadapt.tasks.avqa.demo import AVQADemo
from avadapt.tasks.avqa.questions import QUESTION_TYPE_NAMES, TYPE_GROUPS


def test_miniature_avqa_demo_writes_metrics_by_type_and_a_picture(tmp_path):
    config = AVQADemo(clips=12, questions_per_clip=4, items_per_clip=4, batch_size=8, epochs=1)
    metrics = run_demo(tmp_path, precision="32-true", config=config)  # the task is the config's
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["test_accuracy"] == metrics["test_accuracy"]
    for key in ("test_accuracy", "probe_test_accuracy", "train_seconds", "probe_train_seconds", "val_accuracy"):
        assert key in written, key
    by_type = written["test_accuracy_by_type"]
    assert set(by_type) <= {*QUESTION_TYPE_NAMES, *TYPE_GROUPS, "accuracy"} and "accuracy" in by_type
    assert all(0 <= value <= 1 for value in by_type.values())
    assert by_type["accuracy"] == written["test_accuracy"]
    assert (tmp_path / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert written["prediction"]["answers"] and written["prediction"]["question"]
