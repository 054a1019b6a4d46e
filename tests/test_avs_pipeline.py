"""AVS end to end through the command line: synth → prepare → fit → adapter → predict, and the masks the
adapter predicts equal those of the trained module, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from avadapt.adapter_files import load_adapter
from avadapt.cli import main
from avadapt.data.media import read_audio, write_mp4
from avadapt.models import create_model
from avadapt.prediction import predict_video
from avadapt.tasks.avs.metadata import AVSMedia, metadata_path, read_s4_metadata

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "avs" / "tiny_cpu.yaml"
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]


def test_synth_prepare_fit_predict_round_trip(tmp_path, capsys):
    data, cache = tmp_path / "avs", tmp_path / "cache"
    main(["synth", "avs", "--setting", "s4", "--out", str(data), "--clips", "12", "--seed", "3"])
    assert (data / "s4_meta_data.csv").is_file()
    main(["prepare", "avs", "--setting", "s4", "--root", str(data), "--out", str(cache), "--image-size", "64",
          "--num-mel-bins", "64", "--target-frames", "48"])
    assert (cache / "cache.json").is_file()
    # a random backbone in a file: the adapter directory records it, so the reloaded model has the same one
    backbone = create_model(backbone="test_vit", method="probe", task="avs", backbone_options={"img_size": 64},
                            num_frames=5, tpavi_stages=[]).backbone.model
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    main(["fit", "--config", str(TINY_CONFIG), "--data.root", str(data), "--data.cache_dir", str(cache),
          "--model.weights", str(weights),
          "--trainer.default_root_dir", str(tmp_path / "runs"), "--trainer.max_epochs", "1",
          "--trainer.limit_train_batches", "2", "--trainer.precision", "32-true",
          "--trainer.enable_progress_bar", "false"])
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert any("val_miou" in p.name for p in (run / "checkpoints").glob("epoch*.ckpt"))  # selected on val mIoU
    assert "test/miou" in capsys.readouterr().out

    clip = next(c for c in read_s4_metadata(metadata_path(data, "s4")) if c.split == "test")
    media = AVSMedia.of(data, "s4", clip)
    frames = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in media.frames])
    video = write_mp4(tmp_path / "clip.mp4", np.repeat(frames, 2, axis=0), fps=2, audio=read_audio(media.wav))
    out = tmp_path / "pred" / clip.name
    main(["predict", str(video), "--adapter", str(run / "adapter"), "--out", str(out),
          "--labels", str(media.masks[0].parent)])
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["seconds"] == 5 and result["ground_truth_frames"] == 5  # test clips have all 5 masks
    assert all(0 <= frame["iou"] <= 1 for frame in result["frames"])
    masks = sorted((out.parent / f"{clip.name}_masks").glob("*.png"))
    assert len(masks) == 5 and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"

    # the adapter directory rebuilds the trained model exactly: same probabilities, same mask files
    loaded = load_adapter(run / "adapter")
    again = predict_video(loaded, video)
    written = torch.stack([torch.from_numpy(np.asarray(Image.open(p))) for p in masks])  # (5, H, W) 0/255
    assert torch.equal((again.probabilities > 0.5).to(torch.uint8) * 255, written)
    assert torch.equal(predict_video(loaded, video).probabilities, again.probabilities)
