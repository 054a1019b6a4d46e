"""Prediction on a whole video reads the file as the task declares: its segment length, its window of T segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avadapt.data.media import write_mp4
from avadapt.errors import OptionError
from avadapt.models import create_model, video_data_config
from avadapt.prediction import predict_video, window_starts, write_prediction
from avadapt.tasks.ave.task import AVETask
from avadapt.tasks.base import register_task
from tests.conftest import TINY_AUDIO, TINY_IMAGE, TINY_VIT

pytestmark = pytest.mark.usefixtures("one_thread")


@register_task
class TwoSecondEvents(AVETask):
    """AVE's head and result, over segments of 2 s."""

    name = "events_2s"
    segment_seconds = 2
    prediction_draws_frames = True  # kept, so that a test can see which moment each segment shows


def test_window_starts_cover_the_segments_and_end_with_them():
    assert window_starts(23, 10) == [0, 10, 13]
    assert window_starts(20, 10) == [0, 10]
    assert window_starts(4, 10) == [0]


def test_prediction_reads_segments_of_the_length_the_task_declares(tmp_path):
    fps, seconds = 4, 10
    # every frame of second s is one grey level, 20·s: the frame a segment shows tells which time it was read at
    frames = np.repeat(np.arange(seconds * fps) // fps * 20, 16 * 16 * 3).reshape(-1, 16, 16, 3).astype(np.uint8)
    audio = np.random.default_rng(0).normal(0, 0.1, seconds * 16000).astype(np.float32)
    video = write_mp4(tmp_path / "clip.mp4", frames, fps=fps, audio=audio)
    torch.manual_seed(0)
    model = create_model(backbone=TINY_VIT, method="probe", task="events_2s", num_frames=2, num_classes=3,
                         backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO})
    preprocessing = {"video": video_data_config(model), "audio_front_end": "vit",
                     "fbank": {"num_mel_bins": TINY_AUDIO.num_mel_bins, "target_frames": TINY_AUDIO.num_frames}}

    prediction = predict_video(model, video, preprocessing=preprocessing, class_names=["a", "b", "background"])
    # 10 s = 5 segments of 2 s; windows of T = 2 segments start at segments 0, 2 and 3 (the last one shifted back)
    assert prediction.info["segment_seconds"] == 2 and prediction.info["seconds"] == 10
    assert prediction.info["window_starts"] == [0, 4, 6] and prediction.info["window_seconds"] == 4
    assert prediction.probabilities.shape == (5, 3)
    torch.testing.assert_close(prediction.probabilities.sum(-1), torch.ones(5))
    # segment t shows the frame at its middle, 2t + 1 s, whose grey level is 20·(2t + 1)
    shown = prediction.frames.float().mean(dim=(1, 2, 3))
    torch.testing.assert_close(shown, torch.tensor([20.0, 60.0, 100.0, 140.0, 180.0]), atol=3.0, rtol=0)

    result = write_prediction(prediction, tmp_path / "out" / "clip")
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert (tmp_path / "out" / "clip.json").is_file() and (tmp_path / "out" / "clip.png").is_file()
    unwritten = write_prediction(prediction, None)  # the result alone, no files
    assert "json" not in unwritten and unwritten["segments"] == result["segments"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.json", "clip.png"]


@pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning")  # tiny random backbones
def test_an_adapter_trained_on_squashed_frames_predicts_on_squashed_frames(tmp_path):
    from avadapt.adapter_files import load_adapter, save_adapter

    # 16 × 32 frames, white in their left quarter: the whole frame squashed to 32 × 32 keeps a white quarter,
    # a centre crop (32 × 64, middle 32 columns) keeps none of it
    frames = np.zeros((2 * 4, 16, 32, 3), np.uint8)
    frames[:, :, :8] = 255
    video = write_mp4(tmp_path / "wide.mp4", frames, fps=4, audio=np.zeros(2 * 16000, np.float32))
    shown = {}
    for crop_mode in ("squash", "center"):
        torch.manual_seed(0)
        model = create_model(backbone=TINY_VIT, method="probe", task="events_2s", num_frames=1, num_classes=3,
                             backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO},
                             video_transform={"crop_mode": crop_mode, "crop_pct": 1.0})
        assert model.preprocessing["video"]["crop_mode"] == crop_mode
        loaded = load_adapter(save_adapter(model, tmp_path / crop_mode), pretrained=False)
        prediction = predict_video(loaded, video)  # the geometry comes from the adapter directory alone
        shown[crop_mode] = prediction.frames[0].float().mean(dim=-1)  # (32, 32) grey levels as the model saw them
    white_columns = (shown["squash"] > 200).all(dim=0)
    assert white_columns[:7].all() and not white_columns[9:].any()  # the left quarter, stretched
    assert not (shown["center"] > 200).any()  # cropped away (its edge column blurs into the first one shown)


def test_a_video_transform_sets_the_geometry_only():
    with pytest.raises(OptionError, match="video_transform sets crop_mode, crop_pct, interpolation; not mean"):
        create_model(backbone=TINY_VIT, method="probe", task="ave", num_frames=1,
                     backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO}, video_transform={"mean": 0.5})
