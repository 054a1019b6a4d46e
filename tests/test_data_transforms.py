"""Video frames → backbone tensors, configured by a timm data config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avadapt.data.transforms import VideoTransform, VideoTransformConfig, as_video_tensor

VIT_CONFIG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 0.9,
    "crop_mode": "center",
}


def test_from_a_real_timm_model():
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    transform = VideoTransform.from_timm(timm.data.resolve_data_config(model=model))

    out = transform(np.zeros((10, 240, 320, 3), np.uint8))

    assert out.shape == (10, 3, 224, 224) and out.dtype == torch.float32
    assert transform.cfg.crop_pct == 0.9 and transform.cfg.interpolation == "bicubic"


def test_eval_resizes_to_size_over_crop_pct_then_centre_crops():
    # a frame whose left and right 10 % are white: after resizing the 200-pixel side to
    # floor(224 / 0.875) = 256 and cropping 224, the white bands are mostly cut away
    frames = np.zeros((2, 200, 200, 3), np.uint8)
    frames[:, :, :20] = frames[:, :, -20:] = 255
    transform = VideoTransform.from_timm({**VIT_CONFIG, "crop_pct": 0.875})

    out = transform(frames)

    assert out.shape == (2, 3, 224, 224)
    white_columns = (out[0, 0] > 0.9).all(dim=0).sum().item()
    assert 0 < white_columns < 2 * 22  # 256/200·20 = 25.6 px per band before the 16-px crop
    assert out[0, 0, 112, 112] == pytest.approx(-1.0)  # black (0 − 0.5) / 0.5


def test_normalisation_uses_the_config_mean_and_std():
    config = {**VIT_CONFIG, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "crop_pct": 1.0}
    frames = np.full((1, 224, 224, 3), 255, np.uint8)

    out = VideoTransform.from_timm(config)(frames)

    expected = (1.0 - torch.tensor(config["mean"])) / torch.tensor(config["std"])
    torch.testing.assert_close(out[0, :, 100, 100], expected)


@pytest.mark.parametrize("shape", [(3, 48, 64), (3, 48, 64, 1)])
def test_grayscale_becomes_three_equal_channels(shape):
    frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)

    out = VideoTransform(VideoTransformConfig(input_size=(32, 32), crop_pct=1.0))(frames)

    assert out.shape == (3, 3, 32, 32)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])


def test_train_crop_and_flip_are_one_draw_per_clip():
    frame = np.random.default_rng(0).integers(0, 256, (1, 64, 80, 3), dtype=np.uint8)
    frames = np.repeat(frame, 6, axis=0)  # six identical frames
    transform = VideoTransform(VideoTransformConfig(input_size=(32, 32), train=True, scale=(0.2, 0.6)))

    first = transform(frames, generator=torch.Generator().manual_seed(1))
    again = transform(frames, generator=torch.Generator().manual_seed(1))
    other = transform(frames, generator=torch.Generator().manual_seed(2))

    assert first.shape == (6, 3, 32, 32)
    assert all(torch.equal(first[0], first[t]) for t in range(6))  # same crop for every frame
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_config_round_trips_and_rejects_nonsense():
    cfg = VideoTransformConfig.from_timm(VIT_CONFIG, train=True)
    assert VideoTransformConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="crop_pct"):
        VideoTransformConfig(crop_pct=1.5)
    with pytest.raises(ValueError, match="interpolation"):
        VideoTransformConfig(interpolation="lanczos7")
    with pytest.raises(ValueError, match="uint8"):
        as_video_tensor(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        as_video_tensor(np.zeros((2, 8, 8, 4), np.uint8))


def _left_quarter_white(height: int = 40, width: int = 80) -> np.ndarray:
    """One (1, H, W, 3) frame, white in its left quarter and black elsewhere."""
    frames = np.zeros((1, height, width, 3), np.uint8)
    frames[:, :, : width // 4] = 255
    return frames


def test_squash_stretches_the_whole_frame_and_centre_crops_cut_its_sides():
    frames = _left_quarter_white()  # 40 × 80: twice as wide as high
    squash = VideoTransform(VideoTransformConfig(input_size=(32, 32), crop_pct=1.0, crop_mode="squash"))
    center = VideoTransform(VideoTransformConfig(input_size=(32, 32), crop_pct=1.0, crop_mode="center"))

    squashed = squash.geometry(as_video_tensor(frames))  # (1, 3, 32, 32) uint8
    cropped = center.geometry(as_video_tensor(frames))

    # squash: the whole frame at 32 × 32, its white quarter now 8 columns wide
    white_columns = (squashed[0, 0] > 200).all(dim=0)
    assert white_columns[:7].all() and not white_columns[9:].any()
    # centre: 40 × 80 → 32 × 64, then the middle 32 columns, where the frame is black
    assert int(cropped.max()) < 30


def test_squash_with_a_crop_pct_resizes_each_side_then_crops_the_centre():
    # timm's squash: each side to floor(32 / 0.8) = 40 whatever the aspect ratio, then the centre 32 × 32
    frames = np.zeros((1, 20, 100, 3), np.uint8)
    frames[:, :, 45:55] = 255  # a centred white band, 10 % of the width
    out = VideoTransform(VideoTransformConfig(input_size=(32, 32), crop_pct=0.8, crop_mode="squash")).geometry(
        as_video_tensor(frames))
    white = (out[0, 0] > 200).all(dim=0).nonzero().flatten().tolist()  # 4 of 40 columns, minus the 4 cut per side
    assert out.shape == (1, 3, 32, 32) and 2 <= len(white) <= 4 and min(white) >= 13 and max(white) <= 18


def test_crop_mode_comes_from_the_timm_data_config_and_is_checked():
    assert VideoTransformConfig.from_timm({**VIT_CONFIG, "crop_mode": "squash"}).crop_mode == "squash"
    assert VideoTransformConfig.from_timm({k: v for k, v in VIT_CONFIG.items() if k != "crop_mode"}).crop_mode == \
        "center"
    with pytest.raises(ValueError, match="crop_mode 'border'"):
        VideoTransformConfig.from_timm({**VIT_CONFIG, "crop_mode": "border"})
