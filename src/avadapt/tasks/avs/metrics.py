"""AVSBench's segmentation metrics, mIoU and F-score, as distributed-safe torchmetrics metrics.

Both follow AVSBench's ``mask_iou`` and ``Eval_Fmeasure`` (``avs_scripts/avs_s4/utils/utility.py``) frame by
frame. Each comes in two forms: ``per_batch=True`` reproduces the reference's evaluation loop (``test.py``), whose
``AverageMeter`` averages one score per ``update`` call (evaluation batch; its ``test.sh`` uses 4 clips), and
``per_batch=False`` (default) averages over the frames of the split, so the figure does not depend on how the
split was batched. The F-score the papers report is the per-batch one, which the task logs as ``fscore``
(AVSBench's ``F_score``); the batch-independent F-score is ``fscore_split`` (:func:`avs_metrics`).

``update(logits, masks, annotated)`` takes (N, H, W) pre-sigmoid logits, (N, H, W) binary masks (nonzero is
foreground) and an (N,) bool vector of the frames that have a ground-truth mask; the other frames are ignored.
N is the caller's flattened B·T.

Why torchmetrics' own classes do not fit:

* ``BinaryJaccardIndex`` pools one confusion matrix over all pixels of all frames, where AVSBench averages a
  per-frame IoU.
* ``segmentation.MeanIoU`` scores a frame without an object as 0 or leaves it out, where AVSBench scores it
  by its true-negative ratio.
* ``BinaryFBetaScore`` scores one threshold, where AVSBench takes the maximum over 255 thresholds.
* ``BinaryPrecisionRecallCurve`` (with fixed thresholds) pools its counts over all pixels of the split, so an
  F-score read off it is not AVSBench's mean of per-frame F curves.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torchmetrics import Metric

F_BETA_SQUARED = 0.3  # β² of Eval_Fmeasure's F-score: weighs precision over recall, as in salient-object detection
F_THRESHOLD_COUNT = 255  # probability thresholds Eval_Fmeasure sweeps, linspace(0, 1 - 1e-10, 255)
IOU_EPS = 1e-7  # mask_iou's eps in IoU = |P∩G| / (|P∪G| + eps)
PRECISION_RECALL_EPS = 1e-20  # _eval_pr's guard in precision = TP / (|B| + eps) and recall = TP / (|G| + eps)


def _annotated_frames(logits: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks shapes and keeps the annotated frames: float32 logits and bool ground truth, both (N', H, W)."""
    if logits.ndim != 3 or logits.shape != masks.shape:
        raise ValueError(f"logits and masks must both be (N, H, W), got {tuple(logits.shape)} and {tuple(masks.shape)}")
    if annotated.shape != logits.shape[:1]:
        raise ValueError(f"annotated must be (N,) = ({logits.shape[0]},), got {tuple(annotated.shape)}")
    keep = annotated.to(device=logits.device, dtype=torch.bool)
    return logits.detach()[keep].to(torch.float32), masks.detach()[keep].to(logits.device).bool()


def frame_iou(logits: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
    """(N, H, W) logits and bool masks → (N,) IoU of each frame, as ``mask_iou`` scores it.

    P = 1[sigmoid(logit) > 0.5]; IoU = |P∩G| / (|P∪G| + 1e-7). A frame without an object has no union to
    speak of, so it is scored by how much of it the prediction correctly leaves empty:
    (#pixels with P = 0 and G = 0) / (H·W + 1e-7).
    """
    predicted = torch.sigmoid(logits.float()) > 0.5  # (N, H, W)
    intersection = (predicted & ground_truth).sum((1, 2))  # (N,)
    union = (predicted | ground_truth).sum((1, 2))
    true_negatives = (~predicted & ~ground_truth).sum((1, 2))
    no_object = ~ground_truth.any(dim=2).any(dim=1)
    pixels = logits.shape[-1] * logits.shape[-2]
    intersection = torch.where(no_object, true_negatives, intersection).float()
    union = torch.where(no_object, torch.full_like(union, pixels), union).float()
    return intersection / (union + IOU_EPS)


def frame_f_curves(logits: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
    """(N, H, W) logits and bool masks → (N, 255) F-score of each frame at each of ``Eval_Fmeasure``'s thresholds.

    With B_k = 1[sigmoid(logit) ≥ th_k]: prec = TP/(|B_k| + 1e-20), rec = TP/(|G| + 1e-20),
    F = (1 + β²)·prec·rec / (β²·prec + rec), and 0 where that is 0/0. Comparing every pixel with every threshold
    would take 255× the frame's memory, so each pixel is instead placed in the bin of thresholds it reaches
    (``bucketize``); a suffix sum over the bins gives |B_k| and TP for all thresholds in O(pixels + 255).
    """
    frames = logits.shape[0]
    probabilities = torch.sigmoid(logits.float()).flatten(1)  # (N, H·W)
    # Eval_Fmeasure's thresholds in float32, as the reference builds them (the last one rounds to 1.0)
    thresholds = torch.linspace(0.0, 1.0 - 1e-10, F_THRESHOLD_COUNT, dtype=torch.float32, device=probabilities.device)
    reached = torch.bucketize(probabilities, thresholds, right=True)  # (N, H·W): #thresholds ≤ p, in [0, 255]
    bins = F_THRESHOLD_COUNT + 1
    frame_bin = reached + bins * torch.arange(frames, device=reached.device).unsqueeze(1)  # (N, H·W)
    predicted_per_bin = torch.bincount(frame_bin.flatten(), minlength=frames * bins).view(frames, bins)
    true_per_bin = torch.bincount(frame_bin[ground_truth.flatten(1)], minlength=frames * bins).view(frames, bins)
    # a pixel in bin r passes thresholds 0..r-1, so |B_k| counts the pixels in bins k+1..255
    predicted = predicted_per_bin.flip(1).cumsum(1).flip(1)[:, 1:].float()  # (N, 255)
    true_positives = true_per_bin.flip(1).cumsum(1).flip(1)[:, 1:].float()  # (N, 255)
    objects = ground_truth.flatten(1).sum(1, keepdim=True).float()  # (N, 1)
    precision = true_positives / (predicted + PRECISION_RECALL_EPS)
    recall = true_positives / (objects + PRECISION_RECALL_EPS)
    f_score = (1 + F_BETA_SQUARED) * precision * recall / (F_BETA_SQUARED * precision + recall)
    return torch.nan_to_num(f_score, nan=0.0)


class _FrameScoreMean(Metric):
    """A per-frame score averaged in either form (a mean curve then reduced to its maximum); 0 before any frame
    was counted."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    frame_states: ClassVar[tuple[str, str]]  # names of the (sum, count) states of each form
    batch_states: ClassVar[tuple[str, str]]
    curve_length: ClassVar[int | None] = None  # a frame's score is a curve of this length, not a number

    def __init__(self, per_batch: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.per_batch = per_batch
        # the two forms keep differently named states, so MetricCollection never merges one into the other
        self.sum_name, self.count_name = self.batch_states if per_batch else self.frame_states
        shape = (self.curve_length,) if self.curve_length and not per_batch else ()
        self.add_state(self.sum_name, torch.zeros(shape), dist_reduce_fx="sum")
        self.add_state(self.count_name, torch.tensor(0), dist_reduce_fx="sum")

    def add_frames(self, scores: torch.Tensor) -> None:
        """Count one call's (N', …) per-frame scores; per batch, a call without a frame to score counts as 0."""
        if self.per_batch:
            if scores.shape[0] > 0:
                getattr(self, self.sum_name).add_(_best(scores.mean(0)))
            getattr(self, self.count_name).add_(1)
        else:
            getattr(self, self.sum_name).add_(scores.sum(0))
            getattr(self, self.count_name).add_(scores.shape[0])

    def compute(self) -> torch.Tensor:
        total, count = getattr(self, self.sum_name), getattr(self, self.count_name)
        return _best(total / count if count > 0 else torch.zeros_like(total))


def _best(mean: torch.Tensor) -> torch.Tensor:
    """The maximum of a mean F curve; a mean IoU as it is."""
    return mean.max() if mean.ndim else mean


class AVSMeanIoU(_FrameScoreMean):
    """AVSBench's mIoU: the mean of :func:`frame_iou` over annotated frames. The two forms agree when every batch
    holds the same number of annotated frames; otherwise the per-batch form weighs small batches' frames more."""

    frame_states, batch_states = ("frame_iou_sum", "iou_frames"), ("batch_mean_iou_sum", "iou_batches")

    def update(self, logits: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor) -> None:
        logits, ground_truth = _annotated_frames(logits, masks, annotated)
        if logits.shape[0] > 0:
            self.add_frames(frame_iou(logits, ground_truth))  # (N',)


class AVSFScore(_FrameScoreMean):
    """AVSBench's F-score (β² = 0.3): the maximum over 255 thresholds of the mean of per-frame F curves
    (:func:`frame_f_curves`) over the annotated frames with an object (``Eval_Fmeasure`` leaves out "totally black
    GTs"). The per-batch form depends on the evaluation batch size, since a larger batch's single threshold must
    suit more frames at once (AVSBench's S4 test uses batches of 4 clips × 5 frames); a batch with annotated
    frames but none with an object scores 0 there, as ``Eval_Fmeasure``'s all-zero score, and counts. A call
    without an annotated frame adds nothing to either form."""

    frame_states, batch_states = ("f_curve_sum", "f_frames"), ("batch_best_f_sum", "f_batches")
    curve_length = F_THRESHOLD_COUNT

    def update(self, logits: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor) -> None:
        logits, ground_truth = _annotated_frames(logits, masks, annotated)
        if logits.shape[0] == 0:
            return
        has_object = ground_truth.flatten(1).any(1)
        self.add_frames(frame_f_curves(logits[has_object], ground_truth[has_object]))  # (N', 255), N' ≥ 0


def avs_metrics() -> dict[str, Metric]:
    """The AVS metrics a task head reports, keyed by name.

    ``fscore``: AVSBench's ``F_score``, the per-batch form the papers report, which depends on the evaluation
    batch (``data.eval_batch_size``; AVSBench's test uses 4). ``fscore_split``: the batch-independent form, one
    mean F curve over the split's frames, then its maximum. ``miou``: per frame over the split, which equals
    AVSBench's ``miou`` when every batch holds as many annotated frames (all but a shorter last batch);
    ``miou_per_batch``: AVSBench's exactly. Each keeps its own state names, so ``MetricCollection``'s
    compute-group search never merges two; ``compute_groups=False`` skips that search."""
    return {"miou": AVSMeanIoU(), "fscore": AVSFScore(per_batch=True),
            "miou_per_batch": AVSMeanIoU(per_batch=True), "fscore_split": AVSFScore()}
