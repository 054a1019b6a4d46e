"""AVVP end to end through the command line: synth → prepare → fit (weak labels) → adapter → predict with the
dense annotation, and the adapter reproduces the trained module's probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from avadapt.adapter_files import load_adapter
from avadapt.cli import main
from avadapt.models import create_model
from avadapt.prediction import predict_video
from avadapt.tasks.avvp.dataset import LLPAnnotations
from avadapt.tasks.avvp.metrics import FIGURES

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "avvp" / "tiny_cpu.yaml"
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]


def test_synth_prepare_fit_predict_round_trip(tmp_path, capsys):
    data, cache = tmp_path / "llp", tmp_path / "cache"
    main(["synth", "avvp", "--out", str(data), "--clips", "12", "--seed", "3", "--classes", "4"])
    assert (data / "AVVP_train.csv").is_file() and (data / "AVVP_eval_visual.csv").is_file()
    main(["prepare", "avvp", "--root", str(data), "--out", str(cache), "--image-size", "48", "--num-mel-bins", "64",
          "--target-frames", "48"])
    # a random backbone in a file: the adapter directory records it, so the reloaded model has the same one
    backbone = create_model(backbone="test_vit", method="probe", task="avvp", backbone_options={"img_size": 48},
                            dim=16).backbone.model
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    main(["fit", "--config", str(TINY_CONFIG), "--data.root", str(data), "--data.cache_dir", str(cache),
          "--model.weights", str(weights), "--trainer.default_root_dir", str(tmp_path / "runs"),
          "--trainer.max_epochs", "1", "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false"])
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert any("val_segment_type_av" in p.name for p in (run / "checkpoints").glob("epoch*.ckpt"))
    printed = capsys.readouterr().out
    assert all(f"test/{name}" in printed for name in FIGURES)

    row = LLPAnnotations.load(data).rows("test")[0]
    video = data / "LLP_dataset" / "video" / f"{row.video_id}.mp4"
    out = tmp_path / "pred" / row.video_id
    main(["predict", str(video), "--adapter", str(run / "adapter"), "--out", str(out), "--labels", str(data)])
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["seconds"] == 10 and set(result["events"]) == {"audio", "visual", "audio_visual"}
    assert set(result["f_scores"]) == set(FIGURES) and all(0 <= v <= 1 for v in result["f_scores"].values())
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "segment-level F against the annotation" in capsys.readouterr().out

    # the adapter directory rebuilds the trained model: the same per-second decisions as the JSON's
    again = predict_video(load_adapter(run / "adapter"), video)
    audio, visual, video_level = again.probabilities.unbind(1)  # (10, C)
    names = result["class_names"]
    for track, segments in (("audio", audio), ("visual", visual)):
        on = (segments >= 0.5) & (video_level >= 0.5)
        assert [[names[c] for c in torch.nonzero(on[t]).flatten().tolist()] for t in range(10)] == [
            segment[track] for segment in result["segments"]]
