"""The F-scores of audio-visual video parsing, as the AVVP reference computes them (Tian et al., "Unified
Multisensory Perception: Weakly-Supervised Audio-Visual Video Parsing", ECCV 2020; AVVP-ECCV20
``utils/eval_metrics.py`` and ``main_avvp.py:eval``).

Per video, with C classes and T one-second segments:

* decisions: class c is heard (seen) in segment t when the segment's audio (visual) probability and the video-level
  probability of c both reach 0.5; it is heard AND seen (audio-visual) when both decisions are on. Ground truth:
  the dense audio and visual rows as (C, T) matrices, their product for audio-visual.
* segment level: per class, TP / FP / FN counted over the T segments.
* event level: each class's row split into maximal runs of ones (events); a predicted event is a TP when it
  overlaps ANY ground-truth event of its class by IoU ≥ 0.5 (ties count), else an FP; a ground-truth event that no
  predicted event overlaps so is an FN. There is no one-to-one assignment: two predictions can match one event.
* a video's F: 2TP / (2TP + FP + FN) per class, averaged over the classes with TP + FP > 0 or TP + FN > 0 (those
  predicted or present); a video with no such class scores 1.
* Event@AV pools the audio and visual counts of each class before taking F; Type@AV is the mean of the audio,
  visual and audio-visual F.

The split's figure is the mean over its videos (the reference evaluates one video per batch). Figures are
fractions here; the papers print them × 100.

No torchmetrics class computes these: its F-scores pool counts over samples (micro) or average per class over
the whole split, never per video over the classes present, and none matches events by IoU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torchmetrics import Metric

DECISION_THRESHOLD = 0.5
"""A segment's (or video's) probability at or above this turns the decision on (the reference's ``>= 0.5``)."""
EVENT_IOU = 0.5
"""A predicted event matches a ground-truth event of its class when |x ∩ y| ≥ 0.5 · |x ∪ y|."""
LEVELS = ("segment", "event")
MODALITIES = ("audio", "visual", "audio_visual")
FIGURES = tuple(f"{level}_{name}" for level in LEVELS for name in (*MODALITIES, "type_av", "event_av"))
"""The ten figures: segment- and event-level F for audio, visual and audio-visual, Type@AV and Event@AV."""
_PER_VIDEO = tuple(f"{level}_{name}" for level in LEVELS for name in (*MODALITIES, "event_av"))


class Counts(NamedTuple):
    """Per-class (C,) true positives, false positives and false negatives."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor

    def __add__(self, other: Counts) -> Counts:  # type: ignore[override]
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def decisions(frame_probabilities: torch.Tensor, video_probabilities: torch.Tensor) -> torch.Tensor:
    """(…, T, C) per-segment and (…, C) video-level probabilities → (…, C, T) bool: on where both reach 0.5."""
    video_on = (video_probabilities >= DECISION_THRESHOLD).unsqueeze(-2)  # (…, 1, C)
    return ((frame_probabilities >= DECISION_THRESHOLD) & video_on).transpose(-1, -2)


def segment_counts(predicted: torch.Tensor, truth: torch.Tensor) -> Counts:
    """(C, T) bool decisions and ground truth → per-class counts over the segments."""
    predicted, truth = predicted.bool(), truth.bool()
    return Counts((predicted & truth).sum(-1), (predicted & ~truth).sum(-1), (~predicted & truth).sum(-1))


def event_runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """The maximal runs of ones of a (T,) row as ``[start, end)`` pairs, in order."""
    padded = torch.nn.functional.pad(row.bool().to(torch.int8), (1, 1))  # (T + 2,): 0, row, 0
    edges = torch.diff(padded).nonzero().flatten().tolist()  # rises and falls, alternating
    return list(zip(edges[0::2], edges[1::2]))


def events_match(x: tuple[int, int], y: tuple[int, int]) -> bool:
    """Whether two events overlap by IoU ≥ 0.5: |x ∩ y| ≥ 0.5 · |x ∪ y|."""
    overlap = max(0, min(x[1], y[1]) - max(x[0], y[0]))
    union = (x[1] - x[0]) + (y[1] - y[0]) - overlap
    return overlap >= EVENT_IOU * union


def match_events(guesses: list[tuple[int, int]], events: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(TP, FP, FN) of one class's predicted and ground-truth events: a guess matching any event is a TP, else an
    FP; an event no guess matches is an FN. Nothing is assigned one to one: every guess and every event is judged
    on its own, whatever else matched it."""
    hits = sum(any(events_match(guess, event) for event in events) for guess in guesses)
    missed = sum(not any(events_match(event, guess) for guess in guesses) for event in events)
    return hits, len(guesses) - hits, missed


def event_counts(predicted: torch.Tensor, truth: torch.Tensor) -> Counts:
    """(C, T) bool decisions and ground truth → per-class counts of events (:func:`match_events` per class)."""
    classes = predicted.shape[0]
    tp, fp, fn = (torch.zeros(classes, dtype=torch.long) for _ in range(3))
    for c in (predicted.bool().any(-1) | truth.bool().any(-1)).nonzero().flatten().tolist():
        tp[c], fp[c], fn[c] = match_events(event_runs(predicted[c]), event_runs(truth[c]))
    return Counts(tp, fp, fn)


def mean_f(counts: Counts) -> float:
    """A video's F: the mean of 2TP / (2TP + FP + FN) over the classes predicted or present; 1 when none is."""
    tp, fp, fn = (x.double() for x in counts)
    scored = (tp + fp > 0) | (tp + fn > 0)
    if not scored.any():
        return 1.0
    return float((2 * tp[scored] / (2 * tp[scored] + fp[scored] + fn[scored])).mean())


def video_f_scores(audio: torch.Tensor, visual: torch.Tensor, audio_truth: torch.Tensor,
                   visual_truth: torch.Tensor) -> dict[str, float]:
    """One video's figures from (C, T) bool decisions and ground truth: ``{segment,event}_{audio, visual,
    audio_visual, event_av}`` (Type@AV, a mean of three of them, is taken over the split)."""
    audio, visual, audio_truth, visual_truth = (x.detach().bool().cpu() for x in (audio, visual, audio_truth,
                                                                                  visual_truth))
    scores = {}
    for level, count in (("segment", segment_counts), ("event", event_counts)):
        a, v = count(audio, audio_truth), count(visual, visual_truth)
        av = count(audio & visual, audio_truth & visual_truth)
        scores.update({f"{level}_audio": mean_f(a), f"{level}_visual": mean_f(v),
                       f"{level}_audio_visual": mean_f(av), f"{level}_event_av": mean_f(a + v)})
    return scores


def split_figures(means: dict[str, float]) -> dict[str, float]:
    """The ten figures of a split from the means over its videos of the per-video ones (Type@AV added)."""
    figures = dict(means)
    for level in LEVELS:
        figures[f"{level}_type_av"] = sum(means[f"{level}_{m}"] for m in MODALITIES) / len(MODALITIES)
    return {name: figures[name] for name in FIGURES}


class AVVPFScores(Metric):
    """The ten AVVP figures over a split, each the mean over its videos (:data:`FIGURES`).

    ``update``: (B, C, T) bool audio and visual decisions (:func:`decisions`) and (B, C, T) ground truth. Only
    per-figure sums and the video count are kept, so figures do not depend on batching and sum across devices.
    ``compute()``: the figures as 0-d tensors; a split without videos scores 0.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("sums", torch.zeros(len(_PER_VIDEO), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("videos", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, audio: torch.Tensor, visual: torch.Tensor, audio_truth: torch.Tensor,
               visual_truth: torch.Tensor) -> None:
        if not audio.shape == visual.shape == audio_truth.shape == visual_truth.shape or audio.dim() != 3:
            raise ValueError(f"decisions and ground truth must all be (B, C, T), got {tuple(audio.shape)}, "
                             f"{tuple(visual.shape)}, {tuple(audio_truth.shape)}, {tuple(visual_truth.shape)}")
        for b in range(audio.shape[0]):
            scores = video_f_scores(audio[b], visual[b], audio_truth[b], visual_truth[b])
            self.sums += torch.tensor([scores[name] for name in _PER_VIDEO], dtype=torch.float64,
                                      device=self.sums.device)
        self.videos += audio.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        count = int(self.videos)
        means = {name: float(total) / count if count else 0.0 for name, total in zip(_PER_VIDEO, self.sums)}
        return {name: torch.tensor(value) for name, value in split_figures(means).items()}
