"""Action recognition end to end at the tiniest sizes: synth → prepare → fit → adapter → predict through the command
line, the reloaded adapter giving the same top classes; and the demo in miniature (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import save_file

from avadapt.adapter_files import load_adapter
from avadapt.cli import main
from avadapt.models import create_model
from avadapt.prediction import predict_video, write_prediction
from avadapt.tasks.avar.dataset import KineticsSoundsDataset
from avadapt.tasks.avar.synth import synthesize_avar
from tests.conftest import TINY_IMAGE

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]
TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "avar" / "tiny_cpu.yaml"
CLASSES = 5  # a 2 × 2 grid of picture-and-sound pairs and one solo action


def test_synth_prepare_fit_adapter_predict_round_trip(tmp_path, capsys):
    data, cache = tmp_path / "ks", tmp_path / "cache"
    synthesize_avar(data, clips=15, seed=1, num_classes=CLASSES, size=32, seconds=(2, 3))
    main(["prepare", "avar", "--root", str(data), "--out", str(cache), "--image-size", str(TINY_IMAGE),
          "--num-mel-bins", "32", "--target-frames", "48"])
    backbone = create_model(backbone="test_vit", method="probe", task="avar",
                            backbone_options={"img_size": TINY_IMAGE}).backbone.model
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    main(["fit", "--config", str(TINY_CONFIG), "--data.root", str(data), "--data.cache_dir", str(cache),
          "--data.dataset_options", json.dumps({"val_fraction": 0.25}),
          "--model.task_options", json.dumps({"num_classes": CLASSES}),
          "--model.backbone_options", json.dumps({"img_size": TINY_IMAGE}),
          "--model.fbank", json.dumps({"num_mel_bins": 32, "target_frames": 48}),
          "--model.weights", str(weights), "--trainer.default_root_dir", str(tmp_path / "runs"),
          "--trainer.max_epochs", "1", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false"])
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/accuracy", "val/top5_accuracy", "test/accuracy", "test/top5_accuracy"} <= set(header)
    adapter = json.loads((run / "adapter" / "config.json").read_text())
    assert adapter["class_names"][0] == "picture 0 + sound 0" and len(adapter["class_names"]) == CLASSES

    row = KineticsSoundsDataset.load_lists(data).rows("test")[0]
    video, annotated = data / f"{row.clip}.mp4", adapter["class_names"][row.labels[0]]
    capsys.readouterr()
    main(["predict", str(video), "--adapter", str(run / "adapter"), "--labels", annotated,
          "--out", str(tmp_path / "predicted")])
    printed = capsys.readouterr().out
    written = json.loads((tmp_path / "predicted.json").read_text())
    assert len(written["classes"]) == CLASSES and written["classes"][0]["label"] in printed  # all 5: the top 5
    assert printed.count("(0.") + printed.count("(1.") >= CLASSES and annotated in written["agreement"]
    assert len(written["top_class_over_time"]) == 10
    assert (tmp_path / "predicted.png").read_bytes()[:4] == b"\x89PNG"
    again = write_prediction(predict_video(load_adapter(run / "adapter"), video), None)
    assert again["classes"] == written["classes"]


@pytest.mark.slow
def test_miniature_avar_demo_writes_top1_top5_for_every_run_and_a_picture(tmp_path):
    from avadapt.demo import run_demo
    from avadapt.tasks.avar.demo import AVARDemo

    config = AVARDemo(clips=20, num_classes=5, epochs=1)
    metrics = run_demo(tmp_path, precision="32-true", config=config)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for prefix in ("", "stg_cma_", "probe_"):
        for key in ("test_accuracy", "test_top5_accuracy", "val_accuracy", "trainable_parameters"):
            assert 0 <= written[prefix + key] and written[prefix + key] == metrics[prefix + key], prefix + key
    assert written["test_top5_accuracy"] == 1.0  # five classes: every clip's class is among the top five
    assert (tmp_path / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert len(written["prediction"]["classes"]) == 5 and written["prediction"]["annotated"]
