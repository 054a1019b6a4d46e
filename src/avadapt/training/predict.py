"""Prediction over a video of any length, from an adapter directory, in the form of the model's task.

A model sees T one-second segments at a time (AVE: 10). A longer file is cut into windows of T seconds
placed back to back; the last window is shifted back so it ends with the file, and seconds covered by two
windows get the mean of both windows' probabilities. A file shorter than T seconds is read as one window
padded with its last frame and silence; only its real seconds are reported. The task turns the averaged
per-second probabilities into its result and picture (``Task.write_prediction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avadapt.audio_front_ends import recorded_audio_front_end
from avadapt.data.fbank import segment_fbank
from avadapt.data.media import media_duration, read_clip
from avadapt.data.transforms import VideoTransform, as_video_tensor
from avadapt.models import AVModel
from avadapt.tasks import get_task


def window_starts(seconds: int, window: int) -> list[int]:
    """Whole-second starts of T-second windows covering ``seconds`` seconds, the last one ending at the end."""
    if seconds <= window:
        return [0]
    starts = list(range(0, seconds - window + 1, window))
    if starts[-1] + window < seconds:
        starts.append(seconds - window)
    return starts


def _model_preprocessing(model: AVModel, preprocessing: dict[str, Any] | None) -> dict[str, Any]:
    preprocessing = preprocessing or getattr(model, "adapter_config", {}).get("preprocessing")
    if not preprocessing or "video" not in preprocessing:
        raise ValueError("prediction needs the preprocessing the model was trained with "
                         "({'video': data config, 'audio_front_end': name, 'fbank': {...}}); adapter "
                         "directories record it")
    return preprocessing


@torch.no_grad()
def predict_video(
    model: AVModel,
    path: str | Path,
    preprocessing: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    batch_windows: int = 4,
) -> VideoPrediction:
    """Run ``model`` over the whole file: per-second probabilities of its task and the frame of every second.

    preprocessing / class_names: default to what the adapter directory recorded (``model.adapter_config``).
    """
    preprocessing = _model_preprocessing(model, preprocessing)
    task = get_task(model.spec["task"])
    names = class_names or getattr(model, "adapter_config", {}).get("class_names")
    segments = int(preprocessing.get("num_segments") or model.method.num_frames)
    fbank = recorded_audio_front_end(preprocessing).fbank
    transform = VideoTransform.from_timm(preprocessing["video"])
    duration = media_duration(path)
    seconds = max(1, round(duration))
    starts = window_starts(seconds, segments)
    device = next(model.parameters()).device
    model.eval()

    total: torch.Tensor | None = None
    count = torch.zeros(max(seconds, segments) + segments)
    shown: list[torch.Tensor | None] = [None] * (max(seconds, segments) + segments)
    for lo in range(0, len(starts), batch_windows):
        chunk = starts[lo:lo + batch_windows]
        videos, audios = [], []
        for start in chunk:
            clip = read_clip(path, segments, 1.0, start=float(start), sample_rate=fbank.sample_rate, min_seconds=0)
            pixels = transform.geometry(as_video_tensor(clip.frames))  # (T, 3, H, W) uint8 at the model's size
            videos.append(transform.normalize(pixels))
            audios.append(segment_fbank(clip.wave, fbank, segments))  # (T, 1, F, L)
            for t, frame in enumerate(pixels.permute(0, 2, 3, 1)):  # (H, W, 3)
                if shown[start + t] is None:
                    shown[start + t] = frame
        outputs = model(torch.stack(videos).to(device), torch.stack(audios).to(device))
        probs = task.segment_probabilities(outputs).float().cpu()  # (W, T, ...)
        if total is None:
            total = torch.zeros(count.shape[0], *probs.shape[2:])
        for start, window_probs in zip(chunk, probs):
            total[start:start + segments] += window_probs
            count[start:start + segments] += 1
    view = (-1,) + (1,) * (total.dim() - 1)
    probabilities = (total / count.clamp(min=1).view(view))[:seconds]  # (S, ...)
    info = {
        "video": str(path),
        "duration": round(duration, 3),
        "seconds": seconds,
        "window_seconds": segments,
        "window_starts": starts,
        "class_names": list(names) if names else None,
    }
    return VideoPrediction(probabilities, torch.stack(shown[:seconds]), info)


@dataclass
class VideoPrediction:
    """What :func:`predict_video` found: ``probabilities`` (S, …) per second of the video, ``frames``
    (S, H, W, 3) uint8 the frame of each second as the model saw it, ``info`` the video's facts."""

    probabilities: torch.Tensor
    frames: torch.Tensor
    info: dict[str, Any]


def write_prediction(model: AVModel, prediction: VideoPrediction, out: str | Path,
                     ground_truth: str | None = None) -> dict[str, Any]:
    """Write ``OUT.json`` and ``OUT.png`` (``out`` without suffix) in the model's task's form; returns the result
    (with ``summary``, ``json``, ``png``, and ``agreement`` when ``ground_truth`` is given)."""
    task = get_task(model.spec["task"])
    return task.write_prediction(prediction.probabilities, prediction.frames, prediction.info, Path(out),
                                 ground_truth=ground_truth)


__all__ = ["VideoPrediction", "predict_video", "window_starts", "write_prediction"]
