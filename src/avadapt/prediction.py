"""Prediction on a video file of any length, from an adapter directory, in the form of the model's task.

The file is read as the task reads its clips. A task of fixed-length segments (``Task.segment_seconds``, AVE's
and AVS's 1 s) sees windows of T segments placed back to back; the last window is shifted back so it ends with
the file, segments covered by two windows get the mean of both windows' probabilities, and a file shorter than
one window is padded with its last frame and silence (only its real segments are reported). A task about whole
clips (``segment_seconds`` None: question answering) sees the whole file as one window of T equal parts. The
task makes its inputs (a question) and turns what the model found into its result and picture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avadapt.audio_front_ends import recorded_audio_front_end
from avadapt.data.fbank import segment_fbank
from avadapt.data.media import probe, read_clip
from avadapt.data.transforms import VideoTransform, as_video_tensor
from avadapt.errors import MediaError
from avadapt.models import AVModel
from avadapt.tasks import Task, get_task


def window_starts(segments: int, window: int) -> list[int]:
    """First segments of T-segment windows covering ``segments`` segments, the last one ending at the end."""
    if segments <= window:
        return [0]
    starts = list(range(0, segments - window + 1, window))
    if starts[-1] + window < segments:
        starts.append(segments - window)
    return starts


@dataclass
class VideoPrediction:
    """What :func:`predict_video` found for ``task``: ``probabilities`` (S, …) per segment of the video (a whole-clip
    task: what it kept of its one window), ``frames`` (S, H, W, 3) uint8 the frame of each segment as the model saw
    it, ``info`` the video's facts and what the task's inputs reported."""

    task: Task
    probabilities: Any
    frames: torch.Tensor
    info: dict[str, Any]


@torch.no_grad()
def predict_video(model: AVModel, path: str | Path, preprocessing: dict[str, Any] | None = None,
                  class_names: list[str] | None = None, question: str | None = None, batch_windows: int = 4
                  ) -> VideoPrediction:
    """Run ``model`` over the whole file with the task's inputs (``question``: a question-answering task's).

    preprocessing / class_names: default to what the adapter directory recorded (``model.adapter_config``).
    """
    recorded = getattr(model, "adapter_config", {})
    preprocessing = preprocessing or recorded.get("preprocessing")
    if not preprocessing or "video" not in preprocessing:
        raise ValueError("prediction needs the preprocessing the model was trained with "
                         "({'video': data config, 'audio_front_end': name, 'fbank': {...}}); adapter "
                         "directories record it")
    task = get_task(model.spec["task"])
    names = class_names or recorded.get("class_names")
    window = int(preprocessing.get("num_segments") or model.method.num_frames)
    fbank = recorded_audio_front_end(preprocessing).fbank
    transform = VideoTransform.from_timm(preprocessing["video"])
    inputs, reported = task.prediction_inputs(model.head, question)
    duration = probe(path).duration
    if task.segment_seconds is None:
        if duration <= 0:
            raise MediaError(path, f"the file declares no duration, so its {window} parts cannot be placed")
        length, segments = duration / window, window
    else:
        length, segments = task.segment_seconds, max(1, round(duration / task.segment_seconds))
    starts = window_starts(segments, window)
    info = {"video": str(path), "duration": round(duration, 3), "seconds": round(segments * length, 3),
            "segment_seconds": round(length, 3), "window_seconds": round(window * length, 3),
            "window_starts": [round(start * length, 3) for start in starts],
            "class_names": list(names) if names else None, **reported}
    device = next(model.parameters()).device
    model.eval()

    total, covered = None, torch.zeros(max(segments, window))
    shown: list[torch.Tensor | None] = [None] * len(covered)
    for lo in range(0, len(starts), batch_windows):
        chunk = starts[lo:lo + batch_windows]
        videos, audios = [], []
        for start in chunk:
            clip = read_clip(path, window, length, start=start * length, sample_rate=fbank.sample_rate,
                             min_seconds=0)
            pixels = transform.geometry(as_video_tensor(clip.frames))  # (T, 3, H, W) uint8 at the model's size
            videos.append(transform.normalize(pixels))
            audios.append(segment_fbank(clip.wave, fbank, window, length))  # (T, 1, F, L)
            for t, frame in enumerate(pixels.permute(0, 2, 3, 1)):  # (H, W, 3)
                shown[start + t] = frame if shown[start + t] is None else shown[start + t]
        batch_inputs = {k: v.to(device).expand(len(chunk), *v.shape[1:]) for k, v in inputs.items()}
        kept = task.segment_probabilities(model(torch.stack(videos).to(device), torch.stack(audios).to(device),
                                                **batch_inputs))
        if task.segment_seconds is None:  # the whole file in one window: nothing to average
            return VideoPrediction(task, kept, torch.stack(shown[:segments]), info)
        probabilities = kept.float().cpu()  # (W, T, ...)
        total = torch.zeros(len(covered), *probabilities.shape[2:]) if total is None else total
        for start, window_probabilities in zip(chunk, probabilities):
            total[start:start + window] += window_probabilities
            covered[start:start + window] += 1
    average = total / covered.clamp(min=1).view(-1, *[1] * (total.dim() - 1))  # (max(S, T), ...)
    return VideoPrediction(task, average[:segments], torch.stack(shown[:segments]), info)


def write_prediction(prediction: VideoPrediction, out: str | Path | None, ground_truth: str | None = None,
                     top: int = 3) -> dict[str, Any]:
    """Write ``OUT.json`` and ``OUT.png`` (``out`` without suffix; None: nothing) in the task's form; returns the
    result: the video's facts the task names, the task's fields (:meth:`~avadapt.tasks.base.Task.prediction_result`)
    and ``json`` and ``png``, the paths written."""
    task, info = prediction.task, prediction.info
    fields, write_files = task.prediction_result(prediction.probabilities, prediction.frames, info, ground_truth, top)
    result = {**{key: info[key] for key in task.prediction_facts}, **fields}
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_files(out, result)
        result.update(json=str(out.with_suffix(".json")), png=str(out.with_suffix(".png")))
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def ask(model: AVModel, video: str | Path, question: str, top: int = 3, out: str | Path | None = None
        ) -> dict[str, Any]:
    """The ``top`` answers of a question-answering adapter to ``question`` about ``video``
    (:func:`predict_video` then :func:`write_prediction`)."""
    return write_prediction(predict_video(model, video, question=question), out, top=top)


__all__ = ["VideoPrediction", "ask", "predict_video", "window_starts", "write_prediction"]
