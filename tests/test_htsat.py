"""HTS-AT's audio encoder: the fold, bn0 and time stretch, frozen behaviour, and its checkpoint layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avadapt.backbones import (
    HTSATBackbone,
    HTSATConfig,
    SwinBackbone,
    create_htsat,
    fold_spectrogram,
)
from avadapt.errors import CheckpointError, OptionError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> HTSATBackbone:
    torch.manual_seed(0)
    return create_htsat("tiny")


def set_bn0(backbone: HTSATBackbone, seed: int = 1) -> None:
    """Running statistics and affine weights far from their defaults, so bn0 visibly does something."""
    g = torch.Generator().manual_seed(seed)
    bn0 = backbone.bn0
    with torch.no_grad():
        bn0.running_mean.copy_(torch.randn(bn0.num_features, generator=g) * 3)
        bn0.running_var.copy_(torch.rand(bn0.num_features, generator=g) * 4 + 0.5)
        bn0.weight.copy_(torch.rand(bn0.num_features, generator=g) + 0.5)
        bn0.bias.copy_(torch.randn(bn0.num_features, generator=g))


def test_fold_stacks_time_chunks_along_frequency_by_hand():
    # 2 mel bins × 4 frames, 2 chunks: frames 0–1 become rows 0–1 (mel 0, mel 1), frames 2–3 rows 2–3
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0],
                      [10.0, 11.0, 12.0, 13.0]]).view(1, 1, 2, 4)
    expected = torch.tensor([[0.0, 1.0],
                             [10.0, 11.0],
                             [2.0, 3.0],
                             [12.0, 13.0]]).view(1, 1, 4, 2)
    assert torch.equal(fold_spectrogram(x, 2), expected)


def test_fold_at_htsat_size_puts_mel_f_of_frame_k_256_plus_c_at_row_k_64_plus_f():
    mel, frames = 64, 1024
    x = (torch.arange(mel).view(mel, 1) * 10_000 + torch.arange(frames).view(1, frames)).float().view(1, 1, mel, frames)
    image = fold_spectrogram(x, 4)
    assert image.shape == (1, 1, 256, 256)
    for row, col in [(0, 0), (63, 255), (64, 0), (130, 7), (255, 255), (200, 100)]:
        chunk, f = divmod(row, 64)
        assert image[0, 0, row, col] == f * 10_000 + chunk * 256 + col


def bicubic_stretch(x: np.ndarray, length: int) -> np.ndarray:
    """Keys' cubic convolution (A = −0.75, PyTorch's) along the last axis, align_corners, edge samples repeated."""
    a = -0.75

    def weight(d: float) -> float:
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        if d < 2:
            return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
        return 0.0

    n = x.shape[-1]
    out = np.zeros((*x.shape[:-1], length))
    for i in range(length):
        pos = i * (n - 1) / (length - 1)
        base = math.floor(pos)
        for tap in range(base - 1, base + 3):
            out[..., i] += weight(pos - tap) * x[..., min(max(tap, 0), n - 1)]
    return out


@pytest.mark.parametrize("frames", [1001, 501, 101])  # a 10 s clip (the default), 5 s (DG-SCT's AVS), 1 s
def test_spectrogram_image_is_bn0_then_bicubic_stretch_then_fold(frames):
    torch.manual_seed(0)
    backbone = create_htsat("tiny", num_frames=frames)
    set_bn0(backbone)
    spec = torch.randn(2, 1, 64, frames, dtype=torch.float64)
    image = backbone.double().spectrogram_image(spec)
    assert image.shape == (2, 1, 256, 256)

    bn0 = backbone.bn0
    scale = (bn0.weight / torch.sqrt(bn0.running_var + 1e-5)).detach().numpy()
    normed = (spec[:, 0].numpy() - bn0.running_mean.numpy()[:, None]) * scale[:, None] + bn0.bias.detach().numpy()[:, None]
    stretched = bicubic_stretch(normed, 1024)  # (2, 64, 1024)
    expected = np.zeros((2, 256, 256))
    for chunk in range(4):
        expected[:, chunk * 64:(chunk + 1) * 64] = stretched[:, :, chunk * 256:(chunk + 1) * 256]
    np.testing.assert_allclose(image[:, 0].numpy(), expected, atol=1e-9)
    # align_corners: the first and last frames are kept exactly
    np.testing.assert_allclose(image[:, 0, :64, 0].numpy(), normed[:, :, 0], atol=1e-12)
    np.testing.assert_allclose(image[:, 0, 192:, 255].numpy(), normed[:, :, -1], atol=1e-12)


def test_full_size_encoder_shapes_and_parameter_count():
    backbone = create_htsat()
    assert isinstance(backbone, SwinBackbone) and backbone.family == "swin"
    assert [stage.grid for stage in backbone.stages] == [(64, 64), (32, 32), (16, 16), (8, 8)]
    assert backbone.stage_dims == [96, 192, 384, 768] and backbone.embed_dim == 768
    assert [len(stage.blocks) for stage in backbone.stages] == [2, 2, 6, 2]
    assert [stage.blocks[0].num_heads for stage in backbone.stages] == [4, 8, 16, 32]
    assert all(block.window_size == (8, 8) for block in backbone.blocks)
    assert backbone.model.patch_embed.proj.weight.shape == (96, 1, 4, 4)  # one input channel

    # analytic count: patch embedding (4×4 conv from 1 channel, LayerNorm), per block 12C² + 13C + 225·heads
    # (qkv, proj, fc1, fc2 with biases, two LayerNorms, a (2·8 − 1)² relative position table), patch merging
    # into width C (LayerNorm over 2C, Linear 2C → C without bias), final LayerNorm, bn0's affine weights
    expected = 96 * 16 + 96 + 2 * 96 + 2 * 768 + 2 * 64
    for stage, (depth, heads) in enumerate(zip((2, 2, 6, 2), (4, 8, 16, 32), strict=True)):
        c = 96 * 2**stage
        expected += depth * (12 * c * c + 13 * c + 225 * heads)
        if stage:
            expected += 2 * (2 * c) + 2 * c * c
    assert sum(p.numel() for p in backbone.parameters()) == expected == 27_534_488

    assert backbone.config.num_frames == 1001  # HTS-AT's 10 s AudioSet clip at a 320-sample hop
    with torch.no_grad():
        tokens = backbone.audio_tokens(torch.randn(1, 1, 64, 1001))
    assert tokens.shape == (1, 64 * 64, 96)


def test_stage_handles_reproduce_timm_forward_on_the_folded_image(tiny):
    spec = torch.randn(2, 1, 64, 1001)
    with torch.no_grad():
        x = tiny.audio_tokens(spec)
        for stage in tiny.stages:
            x = stage.downsample(x)
            for block in stage.blocks:
                x = block.run(x)
        ours = tiny.final_norm(x)
        reference = tiny.model.forward_features(tiny.spectrogram_image(spec)).flatten(1, 2)
    torch.testing.assert_close(ours, reference)


def test_frozen_and_evaluating_whatever_train_is_called_with():
    torch.manual_seed(0)
    backbone = create_htsat("tiny")
    set_bn0(backbone)
    holder = nn.ModuleDict({"encoder": backbone, "adapter": nn.Linear(4, 4)})  # a method around it
    spec = torch.randn(3, 1, 64, 1001) * 5 + 2  # batch statistics far from the running ones
    with torch.no_grad():
        holder.eval()
        at_eval = backbone.audio_tokens(spec)
        running_mean = backbone.bn0.running_mean.clone()
        holder.train()
        at_train = backbone.audio_tokens(spec)
    assert holder["adapter"].training
    assert not any(module.training for module in backbone.modules() if module is not backbone)
    assert torch.equal(at_eval, at_train)
    assert torch.equal(backbone.bn0.running_mean, running_mean)  # statistics stay the checkpoint's
    assert not any(p.requires_grad for p in backbone.parameters())
    assert backbone.model.layers[0].blocks[0].drop_path1.__class__ is nn.Identity


def test_gradients_reach_what_is_before_the_encoder_but_not_the_encoder(tiny):
    tiny.train()
    gain = nn.Parameter(torch.ones(1, 1, 64, 1))  # a trainable part in front of the frozen encoder
    x = tiny.audio_tokens(torch.randn(2, 1, 64, 1001) * gain)
    for block in tiny.stages[0].blocks:
        x = block.run(x)
    x.square().mean().backward()
    assert gain.grad is not None and gain.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.parameters())


def test_config_round_trips_through_json_and_checks_itself():
    config = HTSATConfig(embed_dim=16, depths=(1, 1), num_heads=(1, 2), num_mel_bins=16, num_frames=26)
    assert HTSATConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert (config.spec_size, config.stretched_frames) == (64, 256)
    with pytest.raises(ValueError, match="do not fit"):
        HTSATConfig(num_frames=1025)
    with pytest.raises(ValueError, match="one entry per stage"):
        HTSATConfig(depths=(2, 2, 6))
    with pytest.raises(OptionError, match="unknown HTS-AT preset"):
        create_htsat("large")


def test_wrong_input_size_and_video_are_refused(tiny):
    with pytest.raises(ValueError, match="64 mel, 1001 frames"):
        tiny.audio_tokens(torch.zeros(1, 1, 64, 100))
    with pytest.raises(TypeError, match="no video entrance"):
        tiny.video_tokens(torch.zeros(1, 3, 256, 256))


# ---- HTS-AT checkpoint layout --------------------------------------------------------------------------------

def htsat_layout(backbone: HTSATBackbone) -> dict[str, torch.Tensor]:
    """The encoder's weights named as HTS-AT's Lightning checkpoint names them, plus the keys it also holds.

    Written from HTS-AT's layout, independently of the loader: ``sed_model.`` prefix; the patch merging that
    timm keeps at the start of stage i is the original Swin's ``downsample`` at the end of stage i − 1.
    """
    layout = {}
    for key, value in backbone.state_dict().items():
        if key.startswith("model.layers.") and ".downsample." in key:
            stage = int(key.split(".")[2])
            rest = key.split(".downsample.")[1]
            layout[f"sed_model.layers.{stage - 1}.downsample.{rest}"] = value.clone()
        else:
            layout[f"sed_model.{key.removeprefix('model.')}"] = value.clone()
    g = torch.Generator().manual_seed(7)
    layout.update({
        "sed_model.spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 8, generator=g),
        "sed_model.spectrogram_extractor.stft.conv_imag.weight": torch.randn(513, 1, 8, generator=g),
        "sed_model.logmel_extractor.melW": torch.rand(513, 64, generator=g),
        "sed_model.layers.0.blocks.0.attn.relative_position_index": torch.zeros(64, 64, dtype=torch.long),
        "sed_model.layers.0.blocks.1.attn_mask": torch.zeros(64, 64, 64),
        "sed_model.tscam_conv.weight": torch.randn(527, 128, 2, 3, generator=g),
        "sed_model.tscam_conv.bias": torch.randn(527, generator=g),
        "sed_model.head.weight": torch.randn(527, 527, generator=g),
        "sed_model.head.bias": torch.randn(527, generator=g),
    })
    return layout


def randomised(seed: int) -> HTSATBackbone:
    backbone = create_htsat("tiny")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in backbone.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=g) + 0.1)  # positive: valid variances too
            else:
                value.fill_(seed)
    return backbone


@pytest.fixture
def checkpoint(tmp_path):
    source = randomised(seed=11)
    path = tmp_path / "HTSAT_AudioSet_Saved_1.ckpt"
    torch.save({"epoch": 3, "global_step": 1200, "state_dict": htsat_layout(source)}, path)
    return source, path


def test_checkpoint_round_trip_restores_every_weight(checkpoint):
    source, path = checkpoint
    loaded = create_htsat("tiny", weights=path)
    expected, found = source.state_dict(), loaded.state_dict()
    assert sorted(expected) == sorted(found)
    for key in expected:
        assert torch.equal(expected[key], found[key]), key
    assert not any(p.requires_grad for p in loaded.parameters())
    spec = torch.randn(2, 1, 64, 1001)
    with torch.no_grad():
        torch.testing.assert_close(loaded.audio_tokens(spec), source.audio_tokens(spec))


def test_moved_patch_merging_computes_the_original_swin_merge(checkpoint):
    """The original Swin merges x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] (rows, columns) in
    that order; the moved weights in timm's merge must give the same output."""
    source, path = checkpoint
    layout = htsat_layout(source)
    loaded = create_htsat("tiny", weights=path)
    stage = loaded.stages[1]
    c = loaded.stage_dims[0]
    grid = torch.randn(2, 64, 64, c)
    original = torch.cat([grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]], -1)
    original = F.layer_norm(original, (4 * c,), layout["sed_model.layers.0.downsample.norm.weight"],
                            layout["sed_model.layers.0.downsample.norm.bias"])
    original = original @ layout["sed_model.layers.0.downsample.reduction.weight"].T
    with torch.no_grad():
        ours = stage.downsample(grid.flatten(1, 2))
    torch.testing.assert_close(ours, original.flatten(1, 2))


def test_missing_unknown_and_misshapen_keys_name_the_file(checkpoint, tmp_path):
    source, _ = checkpoint
    cases = {
        "missing": (lambda sd: sd.pop("sed_model.layers.1.downsample.reduction.weight"),
                    r"missing \['model.layers.2.downsample.reduction.weight'\]"),
        "unknown": (lambda sd: sd.update({"sed_model.layers.0.blocks.0.gamma": torch.zeros(16)}),
                    r"unexpected \['sed_model.layers.0.blocks.0.gamma'\]"),
        "foreign": (lambda sd: sd.update({"audio_branch.weight": torch.zeros(1)}),
                    r"unexpected \['audio_branch.weight'\]"),
        "shape": (lambda sd: sd.update({"sed_model.norm.weight": torch.zeros(7)}),
                  r"wrong shapes \['model.norm.weight: file \(7,\) vs encoder \(128,\)'\]"),
    }
    for name, (change, message) in cases.items():
        state_dict = htsat_layout(source)
        change(state_dict)
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": state_dict}, path)
        with pytest.raises(CheckpointError, match=message) as info:
            create_htsat("tiny", weights=path)
        assert str(path) in str(info.value), name


def test_full_size_checkpoint_loads(tmp_path):
    """The AudioSet model's key set (12 blocks, 3 merges, bn0 over 64 mel bins) lands on every encoder weight."""
    torch.manual_seed(3)
    source = create_htsat()
    layout = htsat_layout(source)
    assert "sed_model.layers.2.downsample.reduction.weight" in layout
    assert sum(1 for k in layout if k.endswith("relative_position_bias_table")) == 12
    path = tmp_path / "HTSAT_AudioSet_Saved_1.ckpt"
    torch.save({"state_dict": layout}, path)
    torch.manual_seed(4)
    loaded = create_htsat(weights=path)
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in source.state_dict().items())
