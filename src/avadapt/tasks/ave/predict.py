"""AVE's prediction on a whole video: a label per second, its JSON and a timeline picture."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from avadapt.errors import OptionError
from avadapt.tasks.ave.dataset import read_events
from avadapt.tasks.base import Task


class AVEPrediction(Task):
    """AVE's results: per segment a label, its score and the ``top`` classes, and a timeline; ground_truth: an
    annotation row ``Category&VideoID&Quality&Start&End`` or an annotation file holding the video's row."""

    prediction_kind = "per-second event labels (JSON) and a timeline picture (PNG)"
    prediction_draws_frames = False  # the timeline is drawn from the labels alone

    def segment_probabilities(self, outputs: Any) -> torch.Tensor:
        """(B, T, C): the softmax of the classifier's logits, or the CMBS head's per-segment probabilities."""
        if isinstance(outputs, torch.Tensor):
            return outputs.float().softmax(-1)
        return outputs.segment_probabilities()

    def prediction_result(self, probabilities: torch.Tensor, frames: torch.Tensor | None, info: dict[str, Any],
                          ground_truth: str | None = None, top: int = 3) -> tuple[dict[str, Any], Callable]:
        num_classes = probabilities.shape[-1]
        names = list(info.get("class_names") or [f"class {k}" for k in range(num_classes)])
        scores, labels = probabilities.max(-1)
        best = probabilities.topk(min(top, num_classes), dim=-1)
        seconds, step = probabilities.shape[0], info.get("segment_seconds", 1)
        segments = [{"second": t, "start": t * step, "end": (t + 1) * step, "label": names[int(labels[t])],
                     "label_index": int(labels[t]), "score": round(float(scores[t]), 5),
                     "top": [{"label": names[int(k)], "score": round(float(p), 5)}
                             for p, k in zip(best.values[t], best.indices[t])]}
                    for t in range(seconds)]
        result = {"class_names": names, "segments": segments}
        truth = None
        if ground_truth is not None:
            category, start, end = parse_annotation(ground_truth, info["video"])
            if category not in names:
                raise OptionError(f"category {category!r} is not one of the model's classes {names}")
            k = names.index(category)  # for start ≤ t < end; background (the last class) elsewhere
            truth = [k if start <= t < end else len(names) - 1 for t in range(seconds)]
            for segment, label in zip(segments, truth):
                segment["ground_truth"] = names[label]
            result["accuracy"] = sum(int(labels[t]) == truth[t] for t in range(seconds)) / seconds
            result["agreement"] = f"agreement with the annotation: {result['accuracy']:.1%}"
        # "0-2 s background (0.91) · 2-7 s Violin (0.83) · …": runs of one label with their mean score
        result["summary"] = " · ".join(
            f"{a}-{b} s {names[label]} ({sum(s['score'] for s in segments[a:b]) / (b - a):.2f})"
            for a, b, label in label_runs(labels.tolist()))
        return result, lambda out, _: draw_timeline(out.with_suffix(".png"), labels.tolist(),
                                                    [s["score"] for s in segments], names, ground_truth=truth,
                                                    title=Path(info["video"]).name)


def parse_annotation(labels: str, video: str | Path) -> tuple[str, int, int]:
    """(category, start, end) of a row ``Category&VideoID&Quality&Start&End`` given inline, or of the row of
    ``video`` (its file name without suffix is its id) in an annotation file."""
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


def label_runs(labels: Sequence[int]) -> list[tuple[int, int, int]]:
    """Contiguous stretches of one label: (start, end, label), end exclusive."""
    runs: list[tuple[int, int, int]] = []
    for t, label in enumerate(labels):
        if runs and runs[-1][2] == label:
            runs[-1] = (runs[-1][0], t + 1, label)
        else:
            runs.append((t, t + 1, label))
    return runs


def draw_timeline(
    path: str | Path,
    labels: Sequence[int],
    scores: Sequence[float],
    class_names: Sequence[str],
    ground_truth: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """A PNG of the predicted class (``labels``) and its probability (``scores``) for every second, and the
    annotated class (``ground_truth``) as a second strip with the seconds it disagrees with marked. Event classes
    are coloured (tab20 then tab20b), background (the last class) grey; the figure widens with the seconds."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    labels, scores = [int(x) for x in labels], [float(x) for x in scores]
    if len(labels) != len(scores):
        raise ValueError(f"{len(labels)} labels but {len(scores)} scores")
    if ground_truth is not None:
        ground_truth = [int(x) for x in ground_truth]
        if len(ground_truth) != len(labels):
            raise ValueError(f"{len(ground_truth)} ground-truth seconds for {len(labels)} predicted seconds")
    palette = [colormaps["tab20"](i) for i in range(20)] + [colormaps["tab20b"](i) for i in range(20)]
    colors = [palette[i % len(palette)] for i in range(len(class_names) - 1)] + [(0.85, 0.85, 0.85, 1.0)]
    seconds = len(labels)
    strips = [("prediction", labels)] + ([("ground truth", ground_truth)] if ground_truth is not None else [])

    figure = Figure(figsize=(min(max(8.0, 0.45 * seconds), 30.0), 2.4 + 0.8 * len(strips)), layout="constrained")
    FigureCanvasAgg(figure)
    strip_axes, score_axes = figure.subplots(2, 1, sharex=True, height_ratios=[len(strips), 1.6])
    for row, (name, values) in enumerate(strips):
        y = len(strips) - 1 - row
        for start, end, label in label_runs(values):
            strip_axes.add_patch(Rectangle((start, y + 0.05), end - start, 0.9, facecolor=colors[label],
                                           edgecolor="white", linewidth=1.0))
            if end - start >= max(1, seconds // 12):  # the class name, cut to about 6 characters a second
                short = class_names[label].split(",")[0]
                room = max(3, 6 * (end - start))
                strip_axes.text((start + end) / 2, y + 0.5, short if len(short) <= room else short[: room - 1] + "…",
                                ha="center", va="center", fontsize=8, clip_on=True)
    if ground_truth is not None:
        wrong = [t for t in range(seconds) if labels[t] != ground_truth[t]]
        strip_axes.plot([t + 0.5 for t in wrong], [len(strips) - 0.08] * len(wrong), "v", color="crimson",
                        markersize=5, label="disagrees")
        accuracy = 1 - len(wrong) / max(seconds, 1)
        title = f"{title + ' — ' if title else ''}{accuracy:.0%} of {seconds} s agree with the annotation"
    strip_axes.set(ylim=(0, len(strips)), yticks=[len(strips) - 0.5 - i for i in range(len(strips))],
                   yticklabels=[name for name, _ in strips])
    strip_axes.tick_params(axis="y", length=0)
    if title:
        strip_axes.set_title(title, fontsize=10)

    score_axes.bar([t + 0.5 for t in range(seconds)], scores, width=0.9, color=[colors[x] for x in labels],
                   edgecolor="black", linewidth=0.3)
    score_axes.set(ylim=(0, 1), ylabel="confidence", xlim=(0, seconds), xlabel="time (s)",
                   xticks=range(0, seconds + 1, max(1, seconds // 20)))

    shown = sorted(set(labels) | set(ground_truth or []))
    figure.legend(handles=[Patch(color=colors[i], label=class_names[i]) for i in shown], loc="outside right upper",
                  fontsize=8, frameon=False, ncol=(len(shown) + 9) // 10)
    figure.savefig(path, dpi=110)
    return Path(path)
