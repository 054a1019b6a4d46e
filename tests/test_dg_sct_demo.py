"""``avadapt demo --method dg_sct`` in miniature, the probe beside a separate audio encoder (the demo's comparison),
and the demo's HTS-AT weights file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import avadapt
from avadapt.adapter_files import load_adapter
from avadapt.audio_front_ends import audio_front_end
from avadapt.backbones import create_htsat
from avadapt.data.datamodule import AVDataModule
from avadapt.demo import build_module, run_demo, save_audio_encoder
from avadapt.errors import OptionError
from avadapt.tasks.ave.demo import DGSCTDemo
from tests.zoo import BATCH, FRAMES, TINY_BACKBONES, backbone_weights

pytestmark = pytest.mark.usefixtures("one_thread")

MEL, AUDIO_FRAMES = 16, 251  # 16 mel bins every 40 ms of a second tiled to 10 s
FRONT_END = audio_front_end("htsat").with_fbank(num_mel_bins=MEL, frame_shift_ms=40.0, target_frames=AUDIO_FRAMES)


def probe_beside_htsat(**options) -> avadapt.AVModel:
    name, visual_options = TINY_BACKBONES["vit"]
    torch.manual_seed(0)
    return avadapt.create_model(
        backbone=name, method="probe", task="ave", weights=backbone_weights("vit"), num_frames=FRAMES,
        backbone_options={k: v for k, v in visual_options.items() if k != "audio"}, audio_front_end=FRONT_END,
        audio_backbone="htsat_tiny", head="cmbs", **options)


def test_probe_beside_a_separate_audio_encoder_pools_its_frozen_final_tokens():
    model = probe_beside_htsat()
    encoder = model.method.audio_encoder
    assert encoder is not None and encoder.name == "htsat_tiny" and encoder is not model.backbone
    g = torch.Generator().manual_seed(0)
    video = torch.randn(BATCH, FRAMES, 3, *model.backbone.model.patch_embed.img_size, generator=g)
    audio = torch.randn(BATCH, FRAMES, 1, MEL, AUDIO_FRAMES, generator=g) * 10 - 20  # dB-like
    features = model.train().features(video, audio)
    with torch.no_grad():  # timm's own forward of each encoder: the audio Swin's final tokens, the ViT's class token
        tokens = encoder.model.forward_features(encoder.spectrogram_image(audio.flatten(0, 1)))  # (S, H, W, C)
        visual = model.backbone.model.forward_features(video.flatten(0, 1))[:, 0]  # (S, D)
    torch.testing.assert_close(features.audio, tokens.flatten(1, 2).mean(1).view(BATCH, FRAMES, -1), rtol=0,
                               atol=1e-5)
    torch.testing.assert_close(features.video, visual.view(BATCH, FRAMES, -1), rtol=0, atol=1e-5)
    # only the CMBS head trains; both encoders are frozen and get no gradient
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    assert type(model.head).__name__ == "CMBSHead"
    model.head.loss(model(video, audio), {"labels": torch.randint(0, 29, (BATCH, FRAMES))}).backward()
    assert all(p.grad is None for p in model.method.parameters())


def test_probe_full_finetune_trains_the_separate_audio_encoder_too():
    model = probe_beside_htsat(full_finetune=True)
    assert all(p.requires_grad for p in model.method.audio_encoder.model.parameters())
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_demo_audio_encoder_file_has_htsats_layout_and_loads_back(tmp_path):
    encoder = create_htsat("tiny", num_mel_bins=MEL, num_frames=AUDIO_FRAMES)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for value in encoder.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=g) + 0.1)
    path = save_audio_encoder(encoder, tmp_path)
    keys = set(load_file(str(path)))
    # HTS-AT closes stage 0 with the patch merging that timm puts at the start of stage 1
    assert "sed_model.layers.0.downsample.reduction.weight" in keys and "sed_model.bn0.running_mean" in keys
    assert not any(k.startswith("sed_model.layers.3.downsample") for k in keys)
    loaded = create_htsat("tiny", weights=path, num_mel_bins=MEL, num_frames=AUDIO_FRAMES)
    for key, value in encoder.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_method_demo_needs_a_task_it_has():
    with pytest.raises(OptionError, match="dg_sct"):
        run_demo("unused", task="avs", method="dg_sct")
    with pytest.raises(OptionError, match="no demo of method"):
        run_demo("unused", task="ave", method="lavish")


def test_miniature_dg_sct_demo_writes_metrics_and_a_prediction_from_both_saved_encoders(tmp_path, capsys):
    config = DGSCTDemo(clips=12, num_classes=2, epochs=1, probe_epochs=1)
    metrics = run_demo(tmp_path, task="ave", method="dg_sct", precision="32-true", config=config)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert {"test_accuracy", "probe_test_accuracy", "val_accuracy", "probe_val_accuracy", "train_seconds",
            "trainable_parameters", "probe_trainable_parameters", "precision"} <= set(written)
    assert written["test_accuracy"] == metrics["test_accuracy"]
    assert 0 <= written["test_accuracy"] <= 1 and 0 <= written["probe_test_accuracy"] <= 1
    assert "random" in written["backbone"] and written["audio_backbone"].startswith("htsat_tiny (random")
    assert written["probe_trainable_parameters"] < written["trainable_parameters"]
    assert (tmp_path / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    for method in ("dg_sct", "probe"):
        assert (tmp_path / "runs" / method / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "RANDOMLY INITIALISED" in capsys.readouterr().out

    # the exported adapter rebuilds the audio encoder from the demo's file, bn0 statistics included
    adapter = tmp_path / "runs" / "dg_sct" / "adapter"
    source = json.loads((adapter / "config.json").read_text())["backbone_source"]
    assert source["audio_weights"] == str(tmp_path / "random_audio_encoder.safetensors")
    assert source["audio_weights_sha256"] == hashlib.sha256(Path(source["audio_weights"]).read_bytes()).hexdigest()
    model = load_adapter(adapter)
    saved = load_file(source["audio_weights"])
    encoder = model.method.audio_encoder.state_dict()
    for key, file_key in (("bn0.running_mean", "sed_model.bn0.running_mean"),
                          ("bn0.running_var", "sed_model.bn0.running_var"),
                          ("model.patch_embed.proj.weight", "sed_model.patch_embed.proj.weight"),
                          ("model.layers.1.downsample.reduction.weight", "sed_model.layers.0.downsample.reduction.weight")):
        assert torch.equal(encoder[key], saved[file_key]), key

    # bn0 holds the train split's mean and variance of every mel bin
    preprocessing = build_module(config, "probe", tmp_path / "ave").preprocessing
    datamodule = AVDataModule(str(tmp_path / "ave"), dataset="ave", cache_dir=str(tmp_path / "cache"),
                              batch_size=64, num_workers=0, preprocessing=preprocessing)
    datamodule.setup("fit")
    audio = torch.cat([batch.audio for batch in datamodule.train_dataloader()]).double()  # (N, T, 1, F, L)
    mel_first = audio.movedim(3, 0).flatten(1)  # (F, N·T·L)
    torch.testing.assert_close(saved["sed_model.bn0.running_mean"].double(), mel_first.mean(1), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(saved["sed_model.bn0.running_var"].double(), mel_first.var(1, correction=0),
                               rtol=1e-4, atol=1e-3)
