"""The frozen backbone: audio entrance geometry, local weight loading, refusal of unsafe pickles."""

from __future__ import annotations

import pickle

import pytest
import safetensors.torch
import timm
import torch

from avadapt.backbones import AudioEmbeddingConfig, UnsafeCheckpointError, create_backbone
from tests.conftest import TINY_AUDIO, TINY_IMAGE, TINY_VIT


@pytest.mark.parametrize("name,grid", [
    ("vit_base_patch16_clip_224", (8, 6)),   # 128 mel / 16 rows × 102 frames / 16 columns
    ("vit_large_patch14_clip_224", (9, 7)),  # 128 / 14 × 102 / 14
])
def test_audio_entrance_shapes_for_128_mel_by_102_frames(name, grid):
    with torch.device("meta"):
        backbone = create_backbone(name)
        tokens = backbone.audio_tokens(torch.empty(4, 1, 128, 102))
    assert backbone.audio_grid == grid
    assert backbone.audio_position_embedding().shape == (1, 1 + grid[0] * grid[1], backbone.embed_dim)
    assert tokens.shape == (4, 1 + grid[0] * grid[1], backbone.embed_dim)


def test_audio_position_grid_is_the_centre_crop_in_mel_by_time_orientation():
    backbone = create_backbone(TINY_VIT, img_size=96, audio=AudioEmbeddingConfig(num_mel_bins=64, num_frames=32))
    rows, cols = backbone.video_grid  # 6 × 6 pretrained grid
    pos = torch.arange(rows * cols, dtype=torch.float32)
    with torch.no_grad():
        backbone.model.pos_embed[0, 1:] = pos[:, None]  # each position embedding = its grid index
    fitted = backbone.audio_position_embedding()[0, 1:, 0].view(*backbone.audio_grid)
    assert backbone.audio_grid == (4, 2)  # 4 mel rows × 2 time columns
    expected = pos.view(rows, cols)[1:5, 2:4]  # centre rows 1..4, centre columns 2..3: no transpose
    assert torch.equal(fitted, expected)


def test_audio_kernel_is_the_rgb_kernel_collapsed_to_one_channel():
    for reduction in ("sum", "mean"):
        audio = AudioEmbeddingConfig(num_mel_bins=32, num_frames=48, kernel_reduction=reduction)
        backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=audio)
        spectrogram = torch.randn(1, 1, 32, 48)
        as_rgb = spectrogram.expand(1, 3, 32, 48) / (1 if reduction == "sum" else 3)
        direct = backbone.model.patch_embed.proj(as_rgb).flatten(2).transpose(1, 2)
        ours = backbone.audio_tokens(spectrogram)[:, 1:] - backbone.audio_position_embedding()[:, 1:]
        torch.testing.assert_close(ours, direct, rtol=1e-5, atol=1e-5)


def test_wrong_spectrogram_size_is_a_clear_error():
    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    with pytest.raises(ValueError, match="32 mel bins × 48 frames"):
        backbone.audio_tokens(torch.randn(1, 1, 48, 32))


def _reference_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return timm.create_model(TINY_VIT, img_size=TINY_IMAGE, num_classes=10).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_round_trip(tmp_path, suffix):
    state = _reference_state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)  # wrapped, as training scripts save it
    backbone = create_backbone(TINY_VIT, weights=path, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    loaded = backbone.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert not any(p.requires_grad for p in backbone.parameters())


def test_timm_pretrained_cfg_overlay_file_path(tmp_path):
    state = _reference_state_dict()
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(state, path)
    backbone = create_backbone(TINY_VIT, pretrained=True, pretrained_cfg_overlay={"file": str(path)},
                               img_size=TINY_IMAGE, audio=TINY_AUDIO)
    assert torch.equal(backbone.model.pos_embed, state["pos_embed"])


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _reference_state_dict(), "extra": pickle.PickleError("any object")}, path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pth.*refusing.*safetensors"):
        create_backbone(TINY_VIT, weights=path, img_size=TINY_IMAGE, audio=TINY_AUDIO)


def test_mismatched_checkpoint_names_the_problem(tmp_path):
    state = _reference_state_dict()
    del state["blocks.0.attn.qkv.weight"]
    path = tmp_path / "partial.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(ValueError, match="partial.safetensors.*missing.*blocks.0.attn.qkv.weight"):
        create_backbone(TINY_VIT, weights=path, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        create_backbone(TINY_VIT, weights=tmp_path / "nowhere.safetensors")


def test_block_handle_reproduces_the_timm_block_and_caches_reduced_precision_weights():
    """Guard for the one place that re-reads timm's Attention/Mlp internals (backbones/vit.py)."""
    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    handle = backbone.blocks[0]
    assert handle.own_kernels, "timm's ViT block no longer uses plain Attention/Mlp: revisit BlockHandle"
    x = torch.randn(3, 17, backbone.embed_dim)
    through_handle = x + handle.attention(x)
    through_handle = through_handle + handle.ffn(through_handle)
    torch.testing.assert_close(through_handle, handle.block(x), rtol=1e-5, atol=1e-5)
    for seq in (5, 40):  # explicit-matmul path for short sequences, flash kernel for long ones
        y = torch.randn(2, seq, backbone.embed_dim)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours, timm_own = handle.attention(y), handle.block.attn(handle.block.norm1(y))
        torch.testing.assert_close(ours.float(), timm_own.float(), rtol=0.05, atol=0.05)
    assert any(w.dtype == torch.bfloat16 for _, w, _ in handle._cast_cache.values())
    with torch.no_grad():  # a weight change (e.g. loading a checkpoint) invalidates the cached copy
        handle.block.attn.qkv.weight.mul_(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        doubled = handle.attention(y)
    assert not torch.allclose(doubled.float(), ours.float())


def test_data_config_follows_the_built_image_size():
    backbone = create_backbone(TINY_VIT, img_size=TINY_IMAGE, audio=TINY_AUDIO)
    assert backbone.data_config["input_size"] == (3, TINY_IMAGE, TINY_IMAGE)
