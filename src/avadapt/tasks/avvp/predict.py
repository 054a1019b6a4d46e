"""AVVP's prediction on a whole video: per second, the events heard, seen and both, their JSON and a three-track
picture (audio, visual, audio-visual), against the dense annotation when one is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from avadapt.errors import OptionError
from avadapt.tasks.avvp.dataset import DENSE_FILES, LLP_CLASSES, VIDEO_ID_LENGTH, read_dense_labels
from avadapt.tasks.avvp.metrics import (
    DECISION_THRESHOLD,
    MODALITIES,
    event_runs,
    split_figures,
    video_f_scores,
)
from avadapt.tasks.base import Task, TaskHead

TRACK_TITLES = {"audio": "audio (heard)", "visual": "visual (seen)", "audio_visual": "audio-visual (both)"}
TRACK_COLOURS = {"audio": (0.12, 0.47, 0.71), "visual": (0.84, 0.37, 0.0), "audio_visual": (0.17, 0.63, 0.17)}


def track_decisions(probabilities: torch.Tensor) -> dict[str, torch.Tensor]:
    """(S, 3, C) per-second audio, visual and video-level probabilities → (C, S) bool per track, as the metrics
    decide: a segment's and the video's probability both ≥ 0.5; audio-visual where both tracks are on."""
    audio, visual, video = probabilities.float().unbind(1)  # (S, C) each
    video_on = video >= DECISION_THRESHOLD
    heard = ((audio >= DECISION_THRESHOLD) & video_on).T
    seen = ((visual >= DECISION_THRESHOLD) & video_on).T
    return {"audio": heard, "visual": seen, "audio_visual": heard & seen}


def read_video_ground_truth(labels: str | Path, video: str | Path, seconds: int,
                            classes: Sequence[str] = LLP_CLASSES) -> dict[str, torch.Tensor]:
    """(C, seconds) bool audio, visual and audio-visual ground truth of ``video`` (its file name without suffix is
    its YouTube id) from the dense files: ``labels`` is the folder holding both, or either file (the other is read
    from beside it)."""
    labels = Path(labels)
    folder = labels if labels.is_dir() else labels.parent
    paths = {modality: folder / name for modality, name in DENSE_FILES.items()}
    absent = [str(path) for path in paths.values() if not path.is_file()]
    if absent:
        raise OptionError(f"--labels {labels}: an AVVP annotation needs both dense files; not found: "
                          f"{', '.join(absent)}")
    video_id = Path(video).stem[:VIDEO_ID_LENGTH]
    truth, found = {}, set()
    for modality, path in paths.items():
        matrix = torch.zeros(len(classes), seconds, dtype=torch.bool)
        for row in read_dense_labels(path, tuple(classes)):
            if row.filename[:VIDEO_ID_LENGTH] == video_id:
                found.add(row.filename)
                matrix[classes.index(row.label), row.onset:min(row.offset, seconds)] = True
        truth[modality] = matrix
    if not found:
        raise OptionError(f"{folder}: no dense row for video id {video_id!r} in {', '.join(DENSE_FILES.values())}")
    if len(found) > 1:
        raise OptionError(f"{folder}: rows of {len(found)} clips of video id {video_id!r} ({', '.join(sorted(found))}"
                          "); predict the clip's own file")
    truth["audio_visual"] = truth["audio"] & truth["visual"]
    return truth


class AVVPPrediction(Task):
    """AVVP's results: per second the classes heard, seen and both; the events as runs of seconds; and with
    ``ground_truth`` (the folder of the dense files, or one of them) the video's ten F figures."""

    prediction_kind = "per-second audio, visual and audio-visual events (JSON) and a three-track picture (PNG)"
    prediction_draws_frames = False  # the tracks are drawn from the probabilities alone

    def prediction_inputs(self, head: TaskHead, question: str | None = None
                          ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if getattr(head.config, "extra_video_dim", 0):
            raise OptionError("this AVVP adapter fuses precomputed R(2+1)D features, which prediction from a video "
                              "file does not compute; evaluate it with avadapt test on its dataset instead")
        return super().prediction_inputs(head, question)

    def segment_probabilities(self, outputs: Any) -> torch.Tensor:
        """(W, T, 3, C): audio and visual segment probabilities, and the window's video-level one per segment."""
        return outputs.segment_probabilities()

    def prediction_result(self, probabilities: torch.Tensor, frames: torch.Tensor | None, info: dict[str, Any],
                          ground_truth: str | None = None, top: int = 3) -> tuple[dict[str, Any], Callable]:
        seconds, _, num_classes = probabilities.shape
        names = list(info.get("class_names") or LLP_CLASSES[:num_classes])
        tracks = track_decisions(probabilities)
        audio, visual, video = probabilities.float().unbind(1)  # (S, C)
        track_scores = {"audio": audio.T, "visual": visual.T, "audio_visual": torch.minimum(audio, visual).T}
        step = info.get("segment_seconds", 1)
        events = {track: [{"class": names[c], "start": start * step, "end": end * step,
                           "probability": round(float(track_scores[track][c, start:end].mean()), 5)}
                          for c in range(num_classes) for start, end in event_runs(on[c])]
                  for track, on in tracks.items()}
        overall = video.mean(0)  # (C,) the video-level probability, averaged over the seconds
        best = overall.topk(min(top, num_classes))
        result: dict[str, Any] = {
            "class_names": names,
            "segments": [{"second": t, "start": t * step, "end": (t + 1) * step,
                          **{track: [names[c] for c in on[:, t].nonzero().flatten().tolist()]
                             for track, on in tracks.items()}} for t in range(seconds)],
            "events": events,
            "video_classes": [{"class": names[int(k)], "probability": round(float(p), 5)}
                              for p, k in zip(best.values, best.indices)]}
        truth = None
        if ground_truth is not None:
            truth = read_video_ground_truth(ground_truth, info["video"], seconds, names)
            per_video = video_f_scores(tracks["audio"], tracks["visual"], truth["audio"], truth["visual"])
            result["f_scores"] = {name: round(value, 5) for name, value in split_figures(per_video).items()}
            result["agreement"] = "segment-level F against the annotation: " + ", ".join(
                f"{TRACK_TITLES[m].split(' ')[0]} {result['f_scores'][f'segment_{m}']:.2f}" for m in MODALITIES)
        result["summary"] = " · ".join(
            f"{TRACK_TITLES[track].split(' ')[0]}: "
            + (", ".join(f"{e['class']} {e['start']:g}-{e['end']:g} s" for e in found) or "nothing")
            for track, found in events.items())
        return result, lambda out, _: draw_tracks(out.with_suffix(".png"), tracks, track_scores, names,
                                                  ground_truth=truth, title=Path(info["video"]).name)


def draw_tracks(path: str | Path, tracks: dict[str, torch.Tensor], scores: dict[str, torch.Tensor],
                class_names: Sequence[str], ground_truth: dict[str, torch.Tensor] | None = None,
                title: str | None = None) -> Path:
    """A PNG of three tracks over the seconds, audio, visual and audio-visual: a row per class that is predicted
    or annotated in any track, a filled cell where the class is predicted (shaded by its probability), a black
    frame where it is annotated."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    shown = sorted({c for on in [*tracks.values(), *(ground_truth or {}).values()]
                    for c in on.any(-1).nonzero().flatten().tolist()})
    rows = max(len(shown), 1)
    seconds = next(iter(tracks.values())).shape[1]
    figure = Figure(figsize=(min(max(7.0, 0.45 * seconds + 3.0), 30.0), 1.2 + 3 * (0.6 + 0.28 * rows)),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(tracks), 1, sharex=True)
    for ax, (track, on) in zip(axes, tracks.items()):
        colour = TRACK_COLOURS[track]
        for row, c in enumerate(shown):
            y = rows - 1 - row
            for t in on[c].nonzero().flatten().tolist():
                alpha = 0.35 + 0.65 * min(max(float(scores[track][c, t]), 0.0), 1.0)
                ax.add_patch(Rectangle((t + 0.06, y + 0.1), 0.88, 0.8, facecolor=colour, alpha=alpha, linewidth=0))
            if ground_truth is not None:
                for t in ground_truth[track][c].nonzero().flatten().tolist():
                    ax.add_patch(Rectangle((t + 0.03, y + 0.05), 0.94, 0.9, fill=False, edgecolor="black",
                                           linewidth=1.2))
        label = TRACK_TITLES[track]
        if ground_truth is not None:
            hits = int((on & ground_truth[track]).sum())
            total = int(on.sum()) + int(ground_truth[track].sum())
            label += f" — {2 * hits / total:.0%} of cells agree" if total else " — nothing predicted or annotated"
        ax.set_title(label, fontsize=9, loc="left")
        ax.set(xlim=(0, seconds), ylim=(0, rows), yticks=[rows - 0.5 - i for i in range(len(shown))],
               yticklabels=[class_names[c] for c in shown])
        ax.tick_params(axis="y", length=0, labelsize=8)
        ax.grid(axis="x", color="0.9", linewidth=0.5)
        ax.set_axisbelow(True)
    axes[-1].set(xlabel="time (s)", xticks=range(0, seconds + 1, max(1, seconds // 20)))
    handles = [Patch(color=TRACK_COLOURS[t], label=f"predicted {t.replace('_', '-')}") for t in tracks]
    if ground_truth is not None:
        handles.append(Patch(fill=False, edgecolor="black", label="annotated"))
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.savefig(path, dpi=110)
    return Path(path)
