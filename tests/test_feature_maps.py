"""The multi-scale token maps every method hands to dense heads, checked against timm run by hand.

A ViT gives the patch tokens after the blocks at ¼, ½, ¾ and the full depth (the last after the final norm); a
Swin gives each stage's output before the next patch merging. Shapes must be what ``feature_spec()`` declares,
since a dense head is built from the spec before it sees a map.
"""

from __future__ import annotations

import math

import pytest
import torch

import avadapt
from avadapt._registry import METHODS
from avadapt.methods.base import vit_map_taps
from avadapt.models import build_without_weights
from tests.conftest import TINY_AUDIO, TINY_IMAGE, TINY_VIT
from tests.test_method_matrix import supported, with_options
from tests.zoo import BATCH, FRAMES, SWIN_IMAGE, TINY_BACKBONES, build, inputs

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = tuple(TINY_BACKBONES)
# test_vit: 6 blocks of width 64, 16-pixel patches; the zoo's Swins: patch 4, two stages of widths 32 and 64.
TINY_VIT_DEPTH = 6
TINY_VIT_TAPS = (1, 2, 4, 5)  # after ⌈6k/4⌉ = 2, 3, 5, 6 blocks
EXPECTED_SPEC = {"vit": ((64,) * 4, (16,) * 4), "swin": ((32, 64), (4, 8)), "swinv2": ((32, 64), (4, 8))}


def method_cases():
    import avadapt.models  # noqa: F401 - registers every method

    for method in METHODS.names():
        for family in FAMILIES:
            if supported(method, family):
                yield pytest.param(method, family, id=f"{method}-{family}")


def per_segment(x: torch.Tensor) -> torch.Tensor:
    return x.view(BATCH, FRAMES, *x.shape[1:])  # (B, T, ...)


@pytest.mark.parametrize(
    "depth,taps",
    [(12, (2, 5, 8, 11)), (24, (5, 11, 17, 23)), (32, (7, 15, 23, 31)), (6, (1, 2, 4, 5)), (2, (0, 0, 1, 1)),
     (1, (0, 0, 0, 0))])
def test_vit_taps_sit_at_the_quarter_depths(depth, taps):
    assert vit_map_taps(depth) == taps


def test_vit_taps_rule_for_any_depth():
    """Tap k is the output after ⌈k·depth/4⌉ blocks: at least the fraction k/4 of the depth, less than one
    block past it, and the last tap is the last block."""
    for depth in range(1, 50):
        taps = vit_map_taps(depth)
        assert len(taps) == 4 and taps[-1] == depth - 1
        for k, index in enumerate(taps, start=1):
            blocks_run = index + 1
            assert k * depth / 4 <= blocks_run < k * depth / 4 + 1
    with pytest.raises(ValueError, match="at least one block"):
        vit_map_taps(0)


@pytest.mark.parametrize("method,family", list(method_cases()))
def test_maps_have_the_shapes_the_spec_declares(method, family):
    model = build(family, method, **with_options(method, {})).eval()
    spec = model.method.feature_spec()
    dims, strides = EXPECTED_SPEC[family]
    assert (spec.map_dims, spec.map_strides) == (dims, strides)
    video, audio = inputs(model)
    with torch.no_grad():
        features = model.features(video, audio)
    sizes = {"video": video.shape[-2:], "audio": audio.shape[-2:]}
    for modality in ("video", "audio"):
        maps = getattr(features, f"{modality}_maps")
        assert len(maps) == len(dims)
        height, width = sizes[modality]
        for x, dim, stride in zip(maps, dims, strides):
            # only the patch grid: no class token, no prompt tokens
            assert x.shape == (BATCH, FRAMES, (height // stride) * (width // stride), dim)
            assert torch.isfinite(x).all()


def _timm_vit_taps(timm_model, frames: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
    """timm's own multi-scale outputs for (S, 3, H, W) frames: its intermediates at the taps but the last
    (patch tokens, no norm), then ``forward_features`` (final norm), class token removed: (S, N, D) each.
    One call per tap, since timm keeps a block listed twice only once."""
    intermediates = [timm_model.forward_intermediates(frames, indices=[index], output_fmt="NLC",
                                                      intermediates_only=True)[0] for index in taps[:-1]]
    return [*intermediates, timm_model.forward_features(frames)[:, 1:]]


def _timm_vit_blocks(timm_model, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output, by timm's own modules, for (S, 1 + N, D) tokens before the pre-norm."""
    x = timm_model.norm_pre(tokens)
    outputs = []
    for block in timm_model.blocks:
        x = block(x)
        outputs.append(x)
    return outputs


def test_vit_probe_maps_are_timm_block_outputs_at_the_taps():
    model = build("vit", "probe").eval()
    backbone = model.backbone
    timm_model = backbone.model
    assert len(timm_model.blocks) == TINY_VIT_DEPTH
    video, audio = inputs(model)
    with torch.no_grad():
        features = model.features(video, audio)
        frames = video.flatten(0, 1)  # (B*T, 3, H, W)
        video_expected = [per_segment(x) for x in _timm_vit_taps(timm_model, frames, TINY_VIT_TAPS)]
        video_vector = per_segment(timm_model.forward_features(frames)[:, 0])  # (B, T, D) final-normed class token
        # the audio entrance is avadapt's (spectrogram kernel and position fit), the blocks and norm are timm's
        audio_blocks = _timm_vit_blocks(timm_model, backbone.audio_tokens(audio.flatten(0, 1)))
        audio_normed = per_segment(timm_model.norm(audio_blocks[-1]))  # (B, T, 1 + N, D)
    audio_expected = [per_segment(audio_blocks[i])[:, :, 1:] for i in TINY_VIT_TAPS[:-1]] + [audio_normed[:, :, 1:]]
    for ours, theirs in zip(features.video_maps, video_expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for ours, theirs in zip(features.audio_maps, audio_expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # the per-segment vectors: the final-normed class token, whatever maps are tapped on the way
    torch.testing.assert_close(features.video, video_vector, rtol=0, atol=0)
    torch.testing.assert_close(features.audio, audio_normed[:, :, 0], rtol=0, atol=0)


@pytest.mark.parametrize("family", ("swin", "swinv2"))
def test_swin_probe_maps_are_timm_stage_outputs(family):
    model = build(family, "probe").eval()
    backbone = model.backbone
    timm_model = backbone.model
    video, audio = inputs(model)
    with torch.no_grad():
        features = model.features(video, audio)
        entries = {"video": timm_model.patch_embed(video.flatten(0, 1)),  # (B*T, H/4, W/4, C)
                   "audio": backbone.audio_tokens(audio.flatten(0, 1)).view(BATCH * FRAMES, *backbone.video_grid, -1)}
        for modality, x in entries.items():
            stages = []
            for layer in timm_model.layers:  # patch merging, then the stage's blocks
                x = layer(x)
                stages.append(x)
            stages[-1] = timm_model.norm(stages[-1])
            expected = [per_segment(s.flatten(1, 2)) for s in stages]  # (B, T, N_s, C_s)
            for ours, theirs in zip(getattr(features, f"{modality}_maps"), expected, strict=True):
                torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
            torch.testing.assert_close(getattr(features, modality), expected[-1].mean(2), rtol=0, atol=0)
    grids = [SWIN_IMAGE // 4, SWIN_IMAGE // 8]
    assert [m.shape[2] for m in features.video_maps] == [g * g for g in grids]


def test_a_vit_shallower_than_four_blocks_repeats_blocks():
    """Depth 2: taps 0, 0, 1, 1 — the first block's output twice, the last block's raw, then final-normed."""
    model = avadapt.create_model(backbone=TINY_VIT, method="probe", task="ave", num_frames=FRAMES,
                                 backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO, "depth": 2}).eval()
    spec = model.method.feature_spec()
    assert spec.map_dims == (64,) * 4 and spec.map_strides == (16,) * 4
    video, audio = inputs(model)
    timm_model = model.backbone.model
    assert len(timm_model.blocks) == 2
    with torch.no_grad():
        features = model.features(video, audio)
        expected = _timm_vit_taps(timm_model, video.flatten(0, 1), (0, 0, 1, 1))
    assert not torch.equal(expected[2], expected[3])  # block 1's raw output, then after the final norm
    for ours, theirs in zip(features.video_maps, expected, strict=True):
        torch.testing.assert_close(ours, per_segment(theirs), rtol=0, atol=0)
    assert len(features.audio_maps) == 4


def test_av_stfp_maps_hold_patch_tokens_only():
    """With prompts read (gates open), the maps are still the N patch tokens; with every prompt off they are the
    probe's maps."""
    video, audio = inputs(build("vit", "probe"))
    reference = build("vit", "probe").eval().features(video, audio)
    model = build("vit", "av_stfp").eval()
    with torch.no_grad():
        for layer in model.method.layers:
            layer.spatial_gates["video"].fill_(1.0)
    prompted = model.features(video, audio)
    grid = (TINY_IMAGE // 16) ** 2
    assert all(x.shape == (BATCH, FRAMES, grid, 64) for x in prompted.video_maps)
    assert not torch.allclose(prompted.video_maps[0], reference.video_maps[0], atol=1e-3)  # prompts were read
    off = build("vit", "av_stfp", temporal_prompts=False, spatial_prompts=False, fusion_prompts=False).eval()
    for ours, theirs in zip(off.features(video, audio).video_maps, reference.video_maps, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("activation_checkpointing", (False, True))
@pytest.mark.parametrize("family", ("vit", "swin"))
def test_a_loss_on_the_first_map_trains_the_adapters_before_its_tap_only(family, activation_checkpointing):
    model = build(family, "stg_cma", ratio="1/4", activation_checkpointing=activation_checkpointing).train()
    method = model.method
    # the blocks up to the first tap: the ViT's first quarter (blocks 0, 1), the first Swin stage (blocks 0, 1)
    first_tap = TINY_VIT_TAPS[0] if family == "vit" else len(model.backbone.stages[0].blocks) - 1
    video, audio = inputs(model)
    features = model.features(video, audio)
    (features.video_maps[0].square().mean() + features.audio_maps[0].square().mean()).backward()
    for index, block in enumerate(method.blocks):
        grads = [p.grad for p in block.parameters()]
        if index <= first_tap:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), f"block {index} got no gradient"
        else:
            assert all(g is None for g in grads), f"block {index} lies after the tap yet got a gradient"
    if family == "vit":
        assert all(p.grad.abs().sum() > 0 for p in method.temporal_embeddings.values())
        assert all(p.grad is None for p in method.tuned_final_norm.parameters())  # only the last map is normed


@pytest.mark.parametrize("backbone,dims,strides,grids", [
    ("vit_base_patch16_clip_224", (768,) * 4, (16,) * 4, [(14, 14)] * 4),
    ("swin_base_patch4_window7_224", (128, 256, 512, 1024), (4, 8, 16, 32), [(56, 56), (28, 28), (14, 14), (7, 7)]),
])
def test_full_size_maps_on_the_meta_device(backbone, dims, strides, grids):
    """ViT-B/16 and Swin-B at 224 pixels: shapes only, no weights and no arithmetic."""
    model = build_without_weights(backbone=backbone, method="probe", task="ave", num_frames=2)
    spec = model.method.feature_spec()
    assert (spec.map_dims, spec.map_strides, spec.image_size) == (dims, strides, (224, 224))
    assert [(224 // s, 224 // s) for s in strides] == grids
    mel, frames = model.backbone.audio.num_mel_bins, model.backbone.audio.num_frames
    with torch.device("meta"), torch.no_grad():
        features = model.method(torch.empty(1, 2, 3, 224, 224), torch.empty(1, 2, 1, mel, frames))
    assert [tuple(x.shape) for x in features.video_maps] == [(1, 2, math.prod(g), d) for g, d in zip(grids, dims)]
    audio_grids = [(mel // s) * (frames // s) for s in strides]
    assert [tuple(x.shape) for x in features.audio_maps] == [(1, 2, n, d) for n, d in zip(audio_grids, dims)]
