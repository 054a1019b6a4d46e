"""Prediction on video files of any length and number, from an adapter directory, in the form of the model's task.

A file is read as the task reads its clips. A task of fixed-length segments (``Task.segment_seconds``, AVE's
and AVS's 1 s) sees windows of T segments placed back to back; the last window is shifted back so it ends with
the file, segments covered by two windows get the mean of both windows' probabilities, and a file shorter than
one window is padded with its last frame and silence (only its real segments are reported). A task about whole
clips (``segment_seconds`` None: question answering) sees the whole file as one window of T equal parts. The
task makes its inputs (a question) and turns what the model found into its result and picture.

Files are decoded window by window in one pass (:func:`~avadapt.data.media.read_windows`), so memory holds the
model, one batch of windows and the per-segment results, whatever a file's length; the windows of consecutive
files share batches (``batch_windows`` per forward).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from avadapt.audio_front_ends import recorded_audio_front_end
from avadapt.data.fbank import segment_fbank
from avadapt.data.media import probe, read_windows
from avadapt.data.transforms import VideoTransform, as_video_tensor
from avadapt.errors import AVAdaptError, MediaError, OptionError
from avadapt.kernels import cpu_supports_bf16
from avadapt.models import AVModel
from avadapt.tasks import Task, get_task

PRECISIONS = ("fp32", "bf16")
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
    it (None for a task whose result draws no frames, ``Task.prediction_draws_frames``), ``info`` the video's facts
    and what the task's inputs reported, ``timings`` seconds spent decoding (``decode_s``), in the model
    (``model_s``, this video's share of the batches it was in) and in all (``total_s``)."""

    task: Task
    probabilities: Any
    frames: torch.Tensor | None
    info: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def precision_context(device: torch.device, precision: str = "fp32") -> AbstractContextManager:
    """The autocast that runs the model at ``precision`` on ``device``: fp32 runs as is; bf16 autocasts on CUDA (and
    other accelerators) and on a CPU with native bf16 arithmetic (AVX-512 BF16 or AMX). A CPU without it would
    emulate bf16 at a fraction of its fp32 speed, so there bf16 warns and runs in fp32."""
    if precision not in PRECISIONS:
        raise OptionError(f"--precision must be one of {' | '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return nullcontext()
    if device.type == "cpu" and not cpu_supports_bf16():
        warnings.warn("this CPU has no native bf16 arithmetic (AVX-512 BF16 or AMX): predicting in fp32 instead",
                      stacklevel=2)
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class _Reader:
    """How a model reads a file: the task, its window of T segments, the transforms and the task's inputs."""

    def __init__(self, model: AVModel, preprocessing: dict[str, Any] | None, class_names: list[str] | None,
                 question: str | None):
        recorded = getattr(model, "adapter_config", {})
        preprocessing = preprocessing or recorded.get("preprocessing")
        if not preprocessing or "video" not in preprocessing:
            raise ValueError("prediction needs the preprocessing the model was trained with "
                             "({'video': data config, 'audio_front_end': name, 'fbank': {...}}); adapter "
                             "directories record it")
        self.task = get_task(model.spec["task"])
        names = class_names or recorded.get("class_names")
        self.class_names = list(names) if names else None
        self.window = int(preprocessing.get("num_segments") or model.method.num_frames)
        self.fbank = recorded_audio_front_end(preprocessing).fbank
        self.transform = VideoTransform.from_timm(preprocessing["video"])
        self.inputs, self.reported = self.task.prediction_inputs(model.head, question)

    def plan(self, path: Path) -> _Video:
        """The video's segments and windows, from its declared duration."""
        duration = probe(path).duration
        if self.task.segment_seconds is None:
            if duration <= 0:
                raise MediaError(path, f"the file declares no duration, so its {self.window} parts cannot be placed")
            length, segments = duration / self.window, self.window
        else:
            length, segments = self.task.segment_seconds, max(1, round(duration / self.task.segment_seconds))
        starts = window_starts(segments, self.window)
        info = {"video": str(path), "duration": round(duration, 3), "seconds": round(segments * length, 3),
                "segment_seconds": round(length, 3), "window_seconds": round(self.window * length, 3),
                "window_starts": [round(start * length, 3) for start in starts],
                "class_names": self.class_names, **self.reported}
        shown = [None] * max(segments, self.window) if self.task.prediction_draws_frames else None
        return _Video(path, info, starts, length, segments, shown)

    def windows(self, video: _Video) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(T, 3, H, W) normalised frames and (T, 1, F, L) fbanks of each of the video's windows, in order."""
        clips = read_windows(video.path, [start * video.length for start in video.starts], self.window, video.length,
                             sample_rate=self.fbank.sample_rate)
        for start, clip in zip(video.starts, clips):
            pixels = self.transform.geometry(as_video_tensor(clip.frames))  # (T, 3, H, W) uint8 at the model's size
            if video.shown is not None:
                for t, frame in enumerate(pixels.permute(0, 2, 3, 1)):  # (H, W, 3)
                    video.shown[start + t] = frame if video.shown[start + t] is None else video.shown[start + t]
            yield self.transform.normalize(pixels), segment_fbank(clip.wave, self.fbank, self.window, video.length)


@dataclass(eq=False)  # compared and hashed by identity: one per file
class _Video:
    """One file on its way through the model: its plan, what came back for its windows so far, its timings."""

    path: Path
    info: dict[str, Any]
    starts: list[int]  # first segment of each window
    length: float  # seconds per segment
    segments: int
    shown: list[torch.Tensor | None] | None  # (H, W, 3) per segment, where the task draws frames
    total: Any = None  # sum over windows of (S', …) probabilities; a whole-clip task: what it kept
    covered: torch.Tensor | None = None  # (S',) windows per segment
    waiting: int = 0  # windows decoded but not yet through the model
    decoded: bool = False
    timings: dict[str, float] = field(default_factory=lambda: {"decode_s": 0.0, "model_s": 0.0})

    def add(self, task: Task, start: int, window: int, kept: Any) -> None:
        if task.segment_seconds is None:  # the whole file in one window: nothing to average
            self.total = kept
            return
        probabilities = kept.float().cpu()  # (T, ...)
        if self.total is None:
            self.total = torch.zeros(max(self.segments, window), *probabilities.shape[1:])
            self.covered = torch.zeros(len(self.total))
        self.total[start:start + window] += probabilities
        self.covered[start:start + window] += 1

    def result(self, task: Task) -> VideoPrediction:
        frames = torch.stack(self.shown[:self.segments]) if self.shown is not None else None
        timings = {key: round(value, 4) for key, value in self.timings.items()}
        timings["total_s"] = round(self.timings["decode_s"] + self.timings["model_s"], 4)
        if task.segment_seconds is None:
            return VideoPrediction(task, self.total, frames, self.info, timings)
        average = self.total / self.covered.clamp(min=1).view(-1, *[1] * (self.total.dim() - 1))  # (S', ...)
        return VideoPrediction(task, average[:self.segments], frames, self.info, timings)


@torch.no_grad()
def predict_videos(model: AVModel, paths: Iterable[str | Path], preprocessing: dict[str, Any] | None = None,
                   class_names: list[str] | None = None, question: str | None = None, batch_windows: int = 4,
                   precision: str = "fp32", progress: bool | None = False
                   ) -> Iterator[tuple[Path, VideoPrediction | AVAdaptError]]:
    """Run ``model`` over every file of ``paths`` with the task's inputs (``question``: a question-answering task's);
    yields ``(path, prediction)`` as each file is done, or ``(path, error)`` for a file that cannot be read (a
    :class:`~avadapt.errors.AVAdaptError` naming it), and goes on with the next.

    batch_windows: windows per forward, taken across files (a whole-clip task runs one file per forward, its
    outputs describing one window). precision: ``fp32`` or ``bf16`` (:func:`precision_context`). progress: bars
    over the files and over the windows of each file (None: only when stderr is a terminal).
    preprocessing / class_names: default to what the adapter directory recorded (``model.adapter_config``).
    """
    if batch_windows < 1:
        raise OptionError(f"--batch must be at least 1, got {batch_windows}")
    reader = _Reader(model, preprocessing, class_names, question)
    task, window = reader.task, reader.window
    device = next(model.parameters()).device
    autocast = precision_context(device, precision)
    per_forward = 1 if task.segment_seconds is None else batch_windows
    model.eval()
    paths = [Path(path) for path in paths]
    queue: list[tuple[_Video, int, torch.Tensor, torch.Tensor]] = []  # (video, first segment, frames, fbanks)

    def forward() -> Iterator[tuple[Path, VideoPrediction]]:
        """The queued windows through the model; the videos whose windows are now all back."""
        if not queue:
            return
        began = time.perf_counter()
        inputs = {k: v.to(device).expand(len(queue), *v.shape[1:]) for k, v in reader.inputs.items()}
        with autocast:
            outputs = model(torch.stack([q[2] for q in queue]).to(device),  # (W, T, 3, H, W)
                            torch.stack([q[3] for q in queue]).to(device), **inputs)  # (W, T, 1, F, L)
        kept = task.segment_probabilities(outputs)
        share = (time.perf_counter() - began) / len(queue)
        for index, (video, start, _, _) in enumerate(queue):
            video.add(task, start, window, kept if task.segment_seconds is None else kept[index])
            video.timings["model_s"] += share
            video.waiting -= 1
        finished = list(dict.fromkeys(video for video, *_ in queue if video.decoded and not video.waiting))
        queue.clear()
        for video in finished:
            yield video.path, video.result(task)

    with tqdm(paths, unit="video", disable=None if progress is None else not progress) as bar:
        for path in bar:
            video = None
            try:
                began = time.perf_counter()
                video = reader.plan(path)
                with tqdm(total=len(video.starts), unit="window", leave=False, desc=path.name,
                          disable=True if len(video.starts) <= per_forward else bar.disable) as windows:
                    for start, (frames, fbanks) in zip(video.starts, reader.windows(video)):
                        video.timings["decode_s"] += time.perf_counter() - began
                        queue.append((video, start, frames, fbanks))
                        video.waiting += 1
                        if len(queue) >= per_forward:
                            yield from forward()
                        windows.update()
                        began = time.perf_counter()
                video.decoded = True
                if not video.waiting:  # its last windows went through the model before it was known to be whole
                    yield video.path, video.result(task)
            except AVAdaptError as error:
                queue[:] = [entry for entry in queue if entry[0] is not video]
                yield path, error
        yield from forward()


def predict_video(model: AVModel, path: str | Path, preprocessing: dict[str, Any] | None = None,
                  class_names: list[str] | None = None, question: str | None = None, batch_windows: int = 4,
                  precision: str = "fp32") -> VideoPrediction:
    """Run ``model`` over the whole file with the task's inputs (``question``: a question-answering task's); a file
    that cannot be read raises its :class:`~avadapt.errors.AVAdaptError` (see :func:`predict_videos`)."""
    ((_, prediction),) = predict_videos(model, [path], preprocessing, class_names, question, batch_windows, precision)
    if isinstance(prediction, AVAdaptError):
        raise prediction
    return prediction


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


VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")
"""What a folder given to :func:`expand_inputs` is searched for (case-insensitive)."""
RESULTS_NAME = "predictions.jsonl"


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """The video files ``inputs`` name, each once, in the order given: a file as is (a missing one too: its
    prediction then reports it), a folder's files with a :data:`VIDEO_SUFFIXES` suffix (recursively, sorted), a
    glob's matches (sorted; ``**`` spans folders), ``@LIST`` the inputs of a text file, one a line (blank lines
    and ``#`` comments skipped, relative paths from the list's folder). A list that cannot be read, or a folder
    or glob that holds no video, raises :class:`~avadapt.errors.OptionError` naming it."""
    found: dict[Path, None] = {}
    for item in inputs:
        for path in _expand(item, Path.cwd()):
            found.setdefault(Path(os.path.abspath(path)), None)  # "a/../b" as "b", links kept as named
    return list(found)


def _expand(item: str, base: Path) -> list[Path]:
    if item.startswith("@"):
        listing = base / item[1:]
        try:
            lines = listing.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise OptionError(f"{listing}: the list of inputs cannot be read: {error}") from None
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return [path for entry in entries for path in _expand(entry, listing.parent)]
    path = base / item
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if not videos:
            raise OptionError(f"{path}: the folder holds no video file ({' '.join(VIDEO_SUFFIXES)})")
        return videos
    if path.exists() or not any(char in item for char in "*?["):
        return [path]
    matches = sorted(Path(match) for match in glob.glob(str(path), recursive=True))
    videos = [video for match in matches for video in (_expand(str(match), base) if match.is_dir() else [match])]
    if not videos:
        raise OptionError(f"{item}: the pattern matches no file")
    return videos


def picture_names(videos: list[Path]) -> dict[Path, str]:
    """A file name (no suffix) per video for its picture: its own name, with a hash of its path where two videos
    share a name, so that the same list gives the same names on every run."""
    stems: dict[str, int] = {}
    for video in videos:
        stems[video.stem] = stems.get(video.stem, 0) + 1
    return {video: video.stem if stems[video.stem] == 1 else
            f"{video.stem}-{hashlib.sha1(str(video).encode()).hexdigest()[:8]}" for video in videos}


def done_videos(results: Path) -> set[str]:
    """The videos that have a line in a results file (a result or an error), which a rerun skips; a line that
    is not JSON (a run stopped while writing it) counts as not done."""
    done = set()
    if results.is_file():
        for line in results.read_text().splitlines():
            try:
                done.add(json.loads(line)["video"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


@dataclass
class CollectionSummary:
    """What :func:`predict_collection` did: the videos it predicted, those that failed (path, problem) and those
    it skipped as already in ``results``."""

    results: Path
    predicted: list[str]
    failed: list[tuple[str, str]]
    skipped: list[str]


def predict_collection(model: AVModel, videos: list[Path], out: str | Path, pictures: bool = False,
                       ground_truth: str | None = None, top: int = 3, question: str | None = None,
                       batch_windows: int = 4, precision: str = "fp32", progress: bool | None = False
                       ) -> CollectionSummary:
    """Predict every video not yet in ``OUT/predictions.jsonl`` and append one line per video: the task's result
    (:func:`write_prediction`) with the ``timings``, ``precision`` and ``device`` of its run, or ``{"video",
    "error"}`` for a file that cannot be read, after which the others go on. pictures: also write each video's
    picture (and the task's other files) as ``OUT/<video name>.*``. A stopped run is resumed by running it again."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS_NAME
    done = done_videos(results)
    todo = [video for video in videos if str(video) not in done]
    names = picture_names(videos)
    summary = CollectionSummary(results, [], [], [str(video) for video in videos if str(video) in done])
    device = str(next(model.parameters()).device)
    if results.is_file() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with results.open("a") as file:  # a line cut short by a stopped run stays on a line of its own
            file.write("\n")
    with results.open("a") as file:
        for video, prediction in predict_videos(model, todo, question=question, batch_windows=batch_windows,
                                                precision=precision, progress=progress):
            if isinstance(prediction, AVAdaptError):
                line = {"video": str(video), "error": " ".join(str(prediction).split())}
                summary.failed.append((str(video), line["error"]))
            else:
                try:
                    result = write_prediction(prediction, out / names[video] if pictures else None, ground_truth,
                                              top)
                except AVAdaptError as error:  # e.g. no annotation row for this video
                    line = {"video": str(video), "error": " ".join(str(error).split())}
                    summary.failed.append((str(video), line["error"]))
                else:
                    line = {**result, "video": str(video), "timings": prediction.timings, "precision": precision,
                            "device": device}
                    summary.predicted.append(str(video))
            file.write(json.dumps(line) + "\n")
            file.flush()
    return summary


def ask(model: AVModel, video: str | Path, question: str, top: int = 3, out: str | Path | None = None
        ) -> dict[str, Any]:
    """The ``top`` answers of a question-answering adapter to ``question`` about ``video``
    (:func:`predict_video` then :func:`write_prediction`)."""
    return write_prediction(predict_video(model, video, question=question), out, top=top)


__all__ = ["PRECISIONS", "RESULTS_NAME", "VIDEO_SUFFIXES", "CollectionSummary", "VideoPrediction", "ask",
           "done_videos", "expand_inputs", "picture_names", "precision_context", "predict_collection",
           "predict_video", "predict_videos", "window_starts", "write_prediction"]
