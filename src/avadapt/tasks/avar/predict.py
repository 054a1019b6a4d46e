"""Action recognition's prediction on a whole video, read as the datasets read a clip (T segments spread over the
whole file): the most probable classes, how sure each segment alone is of the top one, and a picture."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avadapt.errors import OptionError
from avadapt.tasks.avar.lists import LABEL_SEPARATOR
from avadapt.tasks.base import Task

TOP_K = 5  # recognition reports (and is scored on) the five most probable classes


def annotated_classes(ground_truth: str, names: Sequence[str]) -> list[int]:
    """The class indices of ``--labels``: class names or indices separated by ``;``; anything else is an
    :class:`OptionError` listing a few of the model's classes."""
    index = {name: k for k, name in enumerate(names)}
    classes = []
    for part in (p.strip() for p in ground_truth.split(LABEL_SEPARATOR)):
        if part in index:
            classes.append(index[part])
        elif part.isdigit() and int(part) < len(names):
            classes.append(int(part))
        else:
            shown = ", ".join(map(repr, names[:5]))
            raise OptionError(f"--labels {part!r} is neither one of the model's {len(names)} classes ({shown}, …) "
                              f"nor an index below {len(names)}")
    return classes


class AVARPrediction(Task):
    """Recognition's results: the ``max(top, 5)`` most probable classes of the whole video, the per-segment
    probability of the top class, and ``OUT.png`` (:func:`draw_recognition`); ground_truth: the annotated class
    (name or index; several separated by ``;`` for a multi-label model), reported with its rank."""

    segment_seconds = None
    prediction_kind = "the top-5 classes of the whole video and a picture of the frames and the top class over time"
    prediction_facts = ("video", "duration", "segment_seconds")

    def segment_probabilities(self, outputs: Any) -> dict[str, torch.Tensor]:
        """What the result keeps of the one window's ``RecognitionOutput``: the clip's class probabilities (C,) and
        each segment's own (T, C)."""
        return {"clip": outputs.probabilities()[0].cpu(), "segments": outputs.segment_probabilities()[0].cpu()}

    def prediction_result(self, probabilities: dict[str, torch.Tensor], frames: torch.Tensor | None,
                          info: dict[str, Any], ground_truth: str | None = None, top: int = 3
                          ) -> tuple[dict[str, Any], Callable]:
        clip, segments = probabilities["clip"], probabilities["segments"]
        names = list(info.get("class_names") or [f"class {k}" for k in range(len(clip))])
        if len(names) != len(clip):
            raise OptionError(f"{len(names)} class names for a head with {len(clip)} classes")
        values, indices = clip.topk(min(max(top, TOP_K), len(names)))
        classes = [{"label": names[int(k)], "index": int(k), "probability": round(float(p), 5)}
                   for p, k in zip(values, indices)]
        best = classes[0]["index"]
        over_time = [round(float(p), 5) for p in segments[:, best]]
        result: dict[str, Any] = {
            "classes": classes,
            "top_class_over_time": over_time,
            "summary": " · ".join(f"{c['label']} ({c['probability']:.2f})" for c in classes[:TOP_K]),
        }
        if ground_truth is not None:
            annotated = annotated_classes(ground_truth, names)
            order = clip.argsort(descending=True).tolist()
            rank = min(order.index(k) for k in annotated) + 1
            result.update(annotated=[names[k] for k in annotated], rank=rank, correct=rank == 1)
            where = "top-1" if rank == 1 else f"rank {rank}, in the top {TOP_K}" if rank <= TOP_K else f"rank {rank}"
            result["agreement"] = f"annotated {' / '.join(result['annotated'])}: {where}"

        def write_files(out: Path, _: dict[str, Any]) -> None:
            draw_recognition(out.with_suffix(".png"), frames, [(c["label"], c["probability"]) for c in classes[:TOP_K]],
                             over_time, info["segment_seconds"], title=Path(info["video"]).name,
                             annotated=result.get("annotated"))

        return result, write_files


def draw_recognition(path: str | Path, frames: np.ndarray | torch.Tensor, top_classes: Sequence[tuple[str, float]],
                     top_over_time: Sequence[float], segment_seconds: float, title: str = "",
                     annotated: Sequence[str] | None = None) -> Path:
    """A PNG of a recognition result: the T frames (T, H, W, 3) uint8 in a row, the ``top_classes`` (name,
    probability) as bars, and the probability each segment alone gives the top class, over time (segment t spans
    [t, t + 1) · ``segment_seconds``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames_np = np.asarray(frames, dtype=np.uint8)
    segments = frames_np.shape[0]
    if len(top_over_time) != segments:
        raise ValueError(f"{len(top_over_time)} per-segment values for {segments} frames")
    if not top_classes:
        raise ValueError("no classes to draw")
    figure = Figure(figsize=(max(1.3 * segments, 7.0), 5.6), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, segments, height_ratios=[2.2, 2.0, 1.6])
    for t in range(segments):
        axes = figure.add_subplot(grid[0, t])
        axes.imshow(frames_np[t])
        axes.set(xticks=[], yticks=[])
        axes.set_title(f"{t * segment_seconds:.1f} s", fontsize=7)

    bars = figure.add_subplot(grid[1, :])
    labels = [name for name, _ in top_classes][::-1]
    values = [probability for _, probability in top_classes][::-1]
    marked = set(annotated or ())
    colours = ["seagreen" if name in marked else "steelblue" for name in labels]
    bars.barh(range(len(labels)), values, color=colours)
    bars.set_yticks(range(len(labels)), labels, fontsize=8)
    bars.set_xlim(0, 1)
    for y, value in enumerate(values):
        bars.text(min(value + 0.01, 0.9), y, f"{value:.2f}", va="center", fontsize=8)
    bars.set_xlabel("probability (whole clip)", fontsize=8)

    timeline = figure.add_subplot(grid[2, :])
    centres = (np.arange(segments) + 0.5) * segment_seconds
    timeline.bar(centres, top_over_time, width=0.9 * segment_seconds, color="steelblue")
    timeline.set_ylim(0, 1)
    timeline.set_xlim(0, segments * segment_seconds)
    timeline.set_xlabel("time (s)", fontsize=8)
    timeline.set_ylabel("per segment", fontsize=8)
    timeline.set_title(f"probability of {top_classes[0][0]!r} from each segment alone", fontsize=8)
    heading = f"{title} — " if title else ""
    heading += f"top: {top_classes[0][0]} ({top_classes[0][1]:.2f})"
    if annotated:
        heading += f"; annotated: {' / '.join(annotated)}"
    figure.suptitle(heading, fontsize=10)
    figure.savefig(path, dpi=100)
    return Path(path)
