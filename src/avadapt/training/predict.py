"""Per-second event labels for a video of any length, from an adapter directory.

A model sees T one-second segments at a time (AVE: 10). A longer file is cut into windows of T seconds
placed back to back; the last window is shifted back so it ends with the file, and seconds covered by two
windows get the mean of both windows' probabilities. A file shorter than T seconds is read as one window
padded with its last frame and silence; only its real seconds are reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from avadapt.audio_front_ends import recorded_audio_front_end
from avadapt.data.ave import read_events
from avadapt.data.fbank import segment_fbank
from avadapt.data.media import media_duration, read_clip
from avadapt.data.transforms import VideoTransform
from avadapt.errors import OptionError
from avadapt.models import AVModel
from avadapt.tasks.ave import draw_timeline


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
) -> dict[str, Any]:
    """Run ``model`` over the whole file; returns a JSON-ready dict with one entry per second.

    preprocessing / class_names: default to what the adapter directory recorded (``model.adapter_config``).
    """
    preprocessing = _model_preprocessing(model, preprocessing)
    names = class_names or getattr(model, "adapter_config", {}).get("class_names")
    segments = int(preprocessing.get("num_segments") or model.method.num_frames)
    fbank = recorded_audio_front_end(preprocessing).fbank
    transform = VideoTransform.from_timm(preprocessing["video"])
    duration = media_duration(path)
    seconds = max(1, round(duration))
    starts = window_starts(seconds, segments)
    device = next(model.parameters()).device
    model.eval()

    num_classes = model.spec["task_config"]["num_classes"]
    names = list(names) if names else [f"class {k}" for k in range(num_classes)]
    total = torch.zeros(max(seconds, segments) + segments, num_classes)
    count = torch.zeros(total.shape[0], 1)
    for lo in range(0, len(starts), batch_windows):
        chunk = starts[lo:lo + batch_windows]
        videos, audios = [], []
        for start in chunk:
            clip = read_clip(path, segments, 1.0, start=float(start), sample_rate=fbank.sample_rate, min_seconds=0)
            videos.append(transform(clip.frames))  # (T, 3, H, W)
            audios.append(segment_fbank(clip.wave, fbank, segments))  # (T, 1, F, L)
        logits = model(torch.stack(videos).to(device), torch.stack(audios).to(device))  # (W, T, C)
        probs = logits.float().softmax(-1).cpu()
        for start, window_probs in zip(chunk, probs):
            total[start:start + segments] += window_probs
            count[start:start + segments] += 1
    probs = (total / count.clamp(min=1))[:seconds]  # (S, C)
    scores, labels = probs.max(-1)
    top = probs.topk(min(3, num_classes), dim=-1)
    return {
        "video": str(path),
        "duration": round(duration, 3),
        "seconds": seconds,
        "window_seconds": segments,
        "window_starts": starts,
        "class_names": names,
        "segments": [
            {"second": t, "start": t, "end": t + 1, "label": names[int(labels[t])], "label_index": int(labels[t]), "score": round(float(scores[t]), 5),
             "top": [{"label": names[int(k)], "score": round(float(p), 5)}
                     for p, k in zip(top.values[t], top.indices[t])]}
            for t in range(seconds)
        ],
    }


def parse_annotation(labels: str, video: str | Path) -> tuple[str, int, int]:
    """``Category&VideoID&Quality&Start&End`` given inline, or the row of ``video`` in an annotation file.

    Returns (category, start, end). A file is searched for the video's id (its file name without suffix).
    """
    path = Path(labels)
    if "&" not in labels and path.is_file():
        video_id = Path(video).stem
        rows = [event for event in read_events(path) if event.video_id == video_id]
        if not rows:
            raise OptionError(f"{path}: no annotation row for video id {video_id!r}")
        if len({(e.category, e.start, e.end) for e in rows}) > 1:
            raise OptionError(f"{path}: {len(rows)} different rows for {video_id!r} (AVE repeats some ids with "
                              "different events); pass the row itself: --labels 'Category&id&good&start&end'")
        return rows[0].category, rows[0].start, rows[0].end
    fields = [f.strip() for f in labels.split("&")]
    if len(fields) != 5:
        raise OptionError(f"--labels must be an annotation file or a row 'Category&VideoID&Quality&Start&End', "
                          f"got {labels!r}")
    try:
        return fields[0], int(fields[3]), int(fields[4])
    except ValueError:
        raise OptionError(f"start and end of {labels!r} must be whole seconds") from None


def ground_truth_labels(category: str, start: int, end: int, class_names: list[str], seconds: int) -> list[int]:
    """Per-second AVE labels: the category for start ≤ t < end, background (the last class) elsewhere."""
    if category not in class_names:
        raise OptionError(f"category {category!r} is not one of the model's classes {class_names}")
    k, background = class_names.index(category), len(class_names) - 1
    return [k if start <= t < end else background for t in range(seconds)]


def write_prediction(result: dict[str, Any], out: str | Path, labels: str | None = None) -> dict[str, Path]:
    """Write ``OUT.json`` and ``OUT.png`` (``out`` without suffix); with ``labels``, add the ground truth."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = result["class_names"]
    predicted = [s["label_index"] for s in result["segments"]]
    truth = None
    if labels is not None:
        category, start, end = parse_annotation(labels, result["video"])
        truth = ground_truth_labels(category, start, end, names, result["seconds"])
        for segment, label in zip(result["segments"], truth):
            segment["ground_truth"] = names[label]
        result["accuracy"] = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    png_path = draw_timeline(out.with_suffix(".png"), predicted, [s["score"] for s in result["segments"]], names,
                             ground_truth=truth, title=Path(result["video"]).name)
    return {"json": json_path, "png": png_path}


def summary_line(result: dict[str, Any]) -> str:
    """``0-2 s background · 2-7 s Violin (0.83) · …``: runs of one label with their mean score."""
    parts, segments = [], result["segments"]
    t = 0
    while t < len(segments):
        end = t
        while end + 1 < len(segments) and segments[end + 1]["label_index"] == segments[t]["label_index"]:
            end += 1
        mean = sum(s["score"] for s in segments[t:end + 1]) / (end - t + 1)
        parts.append(f"{t}-{end + 1} s {segments[t]['label']} ({mean:.2f})")
        t = end + 1
    return " · ".join(parts)


__all__ = ["ground_truth_labels", "parse_annotation", "predict_video", "summary_line", "window_starts",
           "write_prediction"]
