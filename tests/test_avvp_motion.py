"""R(2+1)D-18 features for the AVVP heads: torchvision's network with weights from a local file (written here),
the baseline's 8-frame clips, and the files the LLP dataset reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.models.video import r2plus1d_18

from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import CheckpointError, DatasetError
from avadapt.tasks.avvp.dataset import LLPDataset
from avadapt.tasks.avvp.motion import (
    FEATURE_DIM,
    KINETICS_MEAN,
    extract_motion_features,
    load_r2plus1d,
    segment_clips,
)
from avadapt.tasks.avvp.synth import synthesize_llp

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("r2plus1d") / "r2plus1d_18.safetensors"
    save_file({k: v.contiguous() for k, v in r2plus1d_18(weights=None).state_dict().items()}, str(path))
    return path


def test_the_network_is_torchvisions_with_the_files_weights_and_no_classifier(weights, tmp_path):
    from safetensors.torch import load_file

    model = load_r2plus1d(weights)
    reference = r2plus1d_18(weights=None)
    reference.load_state_dict(load_file(str(weights)))
    reference.fc = nn.Identity()
    clip = torch.randn(2, 3, 8, 32, 32)  # the network pools globally; a small frame keeps the test fast
    with torch.no_grad():
        torch.testing.assert_close(model(clip), reference.eval()(clip))
    assert model(clip).shape == (2, FEATURE_DIM) and not any(p.requires_grad for p in model.parameters())
    other = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(CheckpointError, match="not torchvision's r2plus1d_18 weights"):
        load_r2plus1d(other)


def test_clips_are_eight_frames_a_second_at_112_pixels(tmp_path):
    synthesize_llp(tmp_path, clips=1, seed=0, num_classes=2, size=32)
    video = next((tmp_path / "LLP_dataset" / "video").glob("*.mp4"))
    clips = segment_clips(video)
    assert clips.shape == (10, 3, 8, 112, 112)
    # a uniform grey frame of value g normalises to (g - mean) / std: the noisy synthetic frames average near it
    assert abs(float(clips[:, 0].mean()) - (0.39 - KINETICS_MEAN[0]) / 0.22803) < 1.5


@pytest.mark.slow
def test_extracted_features_feed_the_dataset_and_a_fusing_head(weights, tmp_path):
    root = tmp_path / "llp"
    synthesize_llp(root, clips=3, seed=1, num_classes=2, size=32)
    done = extract_motion_features(root, tmp_path / "r2p1d", weights)
    assert len(done["written"]) == 3 and not done["failed"]
    assert extract_motion_features(root, tmp_path / "r2p1d", weights)["written"] == []  # resumes
    transform = VideoTransform(VideoTransformConfig(input_size=(32, 32), crop_pct=1.0))
    dataset = LLPDataset(root, "train", transform=transform, motion_features=tmp_path / "r2p1d")
    item = dataset[0]
    features = item["inputs"]["motion_features"]
    assert features.shape == (10, FEATURE_DIM) and features.dtype == torch.float32
    assert np.array_equal(features.numpy(), np.load(tmp_path / "r2p1d" / f"{dataset.items[0].video_id}.npy"))
    np.save(tmp_path / "r2p1d" / f"{dataset.items[0].video_id}.npy", np.zeros((3, 512), np.float32))
    with pytest.raises(DatasetError, match=r"must be \(10, E\)"):
        dataset[0]
