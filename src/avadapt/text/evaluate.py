"""Scores of classification from class names, computed from per-segment class logits (N, T, C).

The reference (haoyi-duan/DG-SCT) scores three ways; each is here as it computes it, with a sensible form beside:

* **AVE, segment level** (zero-shot/zero_shot.py; few-shot/main_AVE.py): the argmax of each second's logits
  against the argmax of its one-hot label over the C events *and* background. Zero-shot forces ``weak=True``
  whatever ``--is_event_score`` says, so its prompt learner and CLAP text encoder add no ``background`` prompt
  (few-shot/nets/prompt_learner.py appends one only when not ``weak``): the logits have C columns, the label's
  argmax on a background second is C, and background seconds can never be right (``background="none"``). The
  few-shot script keeps ``weak=0`` and so scores a ``background`` prompt (``background="prompt"``).
* **AVE, clip level** (zero_shot.py without ``is_event_score``; few-shot/main_AVE_class.py): the clip's class is
  the class of its first event second, its score the time-mean of the logits, and the argmax is compared.
* **LLP, clip level** (zero_shot.py; few-shot/main_LLP_class.py): the time-mean of the logits against the argmax
  of the multi-hot target, i.e. the clip's *first* class in label order; a clip whose top class is another of its
  classes counts as wrong.

The few-shot scripts average per-batch accuracies (the last, smaller batch weighs as much as a full one); every
figure here is over all clips or seconds at once, as zero_shot.py computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from avadapt.errors import OptionError
from avadapt.tasks.avar.metrics import PresentClassesMAP

BACKGROUND_MODES = ("none", "threshold", "prompt")


def _share(hits: torch.Tensor) -> float:
    """The fraction of true entries; nan for none (a figure over nothing is not 0)."""
    return int(hits.sum()) / hits.numel() if hits.numel() else math.nan


@dataclass(frozen=True)
class SegmentAccuracy:
    accuracy: float  # over all N·T seconds
    event_accuracy: float  # over the seconds with an event
    background_accuracy: float  # over the background seconds (0 with background="none")
    segments: int


def ave_segment_accuracy(logits: torch.Tensor, labels: torch.Tensor, background: str = "none",
                         threshold: float = 0.5) -> SegmentAccuracy:
    """Per-second accuracy on AVE. logits (N, T, C) for the C event classes, or (N, T, C + 1) with
    ``background="prompt"``; labels (N, T) long, background seconds = C. How a second is called background:

    * ``none``: never (the reference's zero-shot): the argmax over the C events; background seconds are all wrong;
    * ``threshold``: when the highest softmax probability over the C events is below ``threshold``;
    * ``prompt``: when the last column, the ``background`` prompt's logit, is the largest (the few-shot reference).
    """
    if background not in BACKGROUND_MODES:
        raise OptionError(f"background must be one of {BACKGROUND_MODES}, got {background!r}")
    num_events = logits.shape[-1] - (background == "prompt")
    if logits.shape[:2] != labels.shape or not 0 <= int(labels.min()) <= int(labels.max()) <= num_events:
        raise ValueError(f"labels must be (N, T) = {tuple(logits.shape[:2])} in 0..{num_events} (background = "
                         f"{num_events}), got {tuple(labels.shape)}")
    predicted = logits.argmax(-1)  # (N, T); in "prompt" mode index C is the background prompt
    if background == "threshold":
        confident = logits.softmax(-1).amax(-1) >= threshold
        predicted = torch.where(confident, predicted, torch.full_like(predicted, num_events))
    hits, is_event = predicted == labels, labels != num_events
    return SegmentAccuracy(_share(hits), _share(hits[is_event]), _share(hits[~is_event]), labels.numel())


@dataclass(frozen=True)
class ClipAccuracy:
    accuracy: float  # over the clips scored
    clips: int  # clips scored
    skipped: int  # clips without an event second, which have no class (the reference compares them with class 0)


def ave_clip_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> ClipAccuracy:
    """Clip classification on AVE: logits (N, T, C) over the C events, labels (N, T) with background = C. The
    clip's class is the class of its first event second, its prediction the argmax of the time-mean logits."""
    num_events = logits.shape[-1]
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"labels must be (N, T) = {tuple(logits.shape[:2])}, got {tuple(labels.shape)}")
    is_event = labels != num_events  # (N, T)
    has_event = is_event.any(1)
    first_event = is_event.float().argmax(1)  # (N,): the first True of each row
    clip_class = labels.gather(1, first_event[:, None])[:, 0]
    hits = logits.mean(1).argmax(-1) == clip_class
    return ClipAccuracy(_share(hits[has_event]), int(has_event.sum()), int((~has_event).sum()))


@dataclass(frozen=True)
class MultiLabelScores:
    top1_hit: float  # the top class is one of the clip's classes
    reference_top1: float  # the top class is the clip's first class in label order (the reference's figure)
    mAP: float  # mean over the classes with a positive clip of their average precision
    clips: int  # clips scored by the two top-1 figures
    skipped: int  # clips without any class, left out of the top-1 figures


def multilabel_clip_scores(logits: torch.Tensor, targets: torch.Tensor) -> MultiLabelScores:
    """Clip classification on a multi-label corpus (LLP): logits (N, T, C), targets (N, C) multi-hot; clip
    scores are the time-mean logits. mAP is :class:`~avadapt.tasks.avar.metrics.PresentClassesMAP` (torchmetrics'
    average precision per class, averaged over the classes the clips show)."""
    if logits.shape[::2] != targets.shape:
        raise ValueError(f"targets must be (N, C) = {tuple(logits.shape[::2])}, got {tuple(targets.shape)}")
    scores, positive = logits.mean(1), targets > 0  # (N, C)
    top = scores.argmax(-1)
    labelled = positive.any(-1)
    hit = positive.gather(1, top[:, None])[:, 0]
    first_class = positive.float().argmax(-1)  # torch's argmax of a multi-hot row: its first positive
    average_precision = PresentClassesMAP(logits.shape[-1])
    average_precision.update(scores, positive.long())
    return MultiLabelScores(_share(hit[labelled]), _share((top == first_class)[labelled]),
                            average_precision.compute().item(), int(labelled.sum()), int((~labelled).sum()))


@dataclass(frozen=True)
class TopKAccuracy:
    top1: float
    top5: float  # the label among the 5 highest (all C when C < 5)
    clips: int


def clip_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> TopKAccuracy:
    """Top-1 and top-5 clip accuracy on a single-label corpus: logits (N, T, C) averaged over time, labels (N,)."""
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must be (N,) = ({logits.shape[0]},), got {tuple(labels.shape)}")
    ranked = logits.mean(1).topk(min(5, logits.shape[-1]), dim=-1).indices  # (N, 5)
    found = ranked == labels[:, None]
    return TopKAccuracy(_share(found[:, 0]), _share(found.any(-1)), labels.numel())


def segment_or_clip_scores(logits: torch.Tensor, labels: torch.Tensor, background: str = "none",
                           threshold: float = 0.5) -> dict[str, float | int]:
    """Every score the labels allow, flat, with ``accuracy`` the headline: (N, T) per-second labels (AVE) →
    segment accuracy (``background`` as :func:`ave_segment_accuracy`) and clip accuracy of the first event's
    class; (N, C) multi-hot → the multi-label clip scores (headline: the top-1 hit); (N,) → top-1 / top-5."""
    if labels.is_floating_point():
        multi = multilabel_clip_scores(logits, labels)
        return {"accuracy": multi.top1_hit, "reference_top1": multi.reference_top1, "mAP": multi.mAP,
                "clips": multi.clips}
    if labels.dim() == 2:
        segment = ave_segment_accuracy(logits, labels, background, threshold)
        events = logits[..., :-1] if background == "prompt" else logits
        clip = ave_clip_accuracy(events, labels)
        return {"accuracy": segment.accuracy, "event_accuracy": segment.event_accuracy,
                "background_accuracy": segment.background_accuracy, "clip_accuracy": clip.accuracy,
                "segments": segment.segments, "clips": clip.clips}
    top = clip_accuracy(logits, labels)
    return {"accuracy": top.top1, "top5_accuracy": top.top5, "clips": top.clips}
