"""AVS metrics: mIoU and F-score against hand computations and a plain per-threshold loop."""

from __future__ import annotations

import pytest
import torch
from torchmetrics import MetricCollection

from avadapt.tasks.avs.metrics import AVSFScore, AVSMeanIoU, avs_metrics, frame_f_curves

CONFIDENT = 5.0  # sigmoid(±5) = 0.993 / 0.007: on either side of every threshold but the first and the last
F_AT_PRECISION_QUARTER = 1.3 * 0.25 / (0.3 * 0.25 + 1.0)  # F(β²=0.3) with precision 1/4, recall 1


def _confident_logits(predicted: list[list[list[int]]]) -> torch.Tensor:
    """(N, H, W) logits that sigmoid to > 0.5 exactly where ``predicted`` is 1."""
    return (torch.tensor(predicted, dtype=torch.float32) * 2 - 1) * CONFIDENT


def _logits_of(probabilities: list[list[list[float]]]) -> torch.Tensor:
    return torch.logit(torch.tensor(probabilities, dtype=torch.float64)).float()


def _all(frames: int) -> torch.Tensor:
    return torch.ones(frames, dtype=torch.bool)


def _f_curve_by_loop(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One frame's F curve, threshold by threshold, as AVSBench's ``_eval_pr`` and ``Eval_Fmeasure`` write it."""
    probabilities = torch.sigmoid(logits.float())
    target = mask.float()
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    curve = torch.zeros(255)
    for i in range(255):
        binary = (probabilities >= thresholds[i]).float()
        true_positives = (binary * target).sum()
        precision = true_positives / (binary.sum() + 1e-20)
        recall = true_positives / (target.sum() + 1e-20)
        f_score = (1 + 0.3) * precision * recall / (0.3 * precision + recall)
        curve[i] = 0.0 if torch.isnan(f_score) else f_score
    return curve


def _updated(metric, batches):
    for logits, masks, annotated in batches:
        metric.update(logits, masks, annotated)
    return metric.compute().item()


# frame 0: an object of two pixels, one of them found plus a false positive: IoU = 1 / 3
# frame 1: no object, one false positive: true-negative ratio = 3 / 4
HAND_MASKS = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.float32)
HAND_LOGITS = _confident_logits([[[1, 0], [1, 0]], [[0, 1], [0, 0]]])
HAND_MIOU = (1 / 3 + 3 / 4) / 2


@pytest.mark.parametrize("per_batch", [False, True])
def test_miou_by_hand_with_a_partial_overlap_and_a_frame_without_object(per_batch):
    miou = _updated(AVSMeanIoU(per_batch=per_batch), [(HAND_LOGITS, HAND_MASKS, _all(2))])
    assert miou == pytest.approx(HAND_MIOU, rel=1e-6)


def test_empty_prediction_on_an_object_scores_iou_zero_and_f_only_at_the_zero_threshold():
    masks = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.float32)
    logits = torch.full((1, 2, 2), -CONFIDENT)
    assert _updated(AVSMeanIoU(), [(logits, masks, _all(1))]) == 0.0
    # th = 0 counts every pixel as predicted (precision 1/4, recall 1); every later threshold predicts nothing
    assert _updated(AVSFScore(), [(logits, masks, _all(1))]) == pytest.approx(F_AT_PRECISION_QUARTER, rel=1e-6)


def test_f_score_of_a_tiny_example_equals_the_per_threshold_loop():
    masks = torch.tensor([[[1, 1, 0], [0, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 1, 1], [0, 0, 1]]])
    logits = _logits_of([[[0.9, 0.7, 0.4], [0.2, 0.55, 0.8], [0.05, 0.3, 0.1]],
                         [[0.6, 0.1, 0.2], [0.3, 0.95, 0.45], [0.02, 0.7, 0.35]]])
    loop_curves = torch.stack([_f_curve_by_loop(logits[i], masks[i]) for i in range(2)])
    assert _updated(AVSFScore(), [(logits, masks, _all(2))]) == pytest.approx(
        loop_curves.mean(0).max().item(), rel=1e-6)


def test_binned_f_curves_equal_the_per_threshold_loop_including_probabilities_on_thresholds():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 16, 16, generator=generator) * 4
    masks = torch.rand(4, 16, 16, generator=generator) < 0.3
    # probabilities exactly 0, 1/2 and 1 sit on thresholds th_0 = 0, th_127 = 0.5 and th_254 = 1.0 (float32)
    logits[0, 0, :4] = torch.tensor([float("-inf"), 0.0, float("inf"), 40.0])
    masks[0, 0, :4] = torch.tensor([True, True, False, True])
    loop_curves = torch.stack([_f_curve_by_loop(logits[i], masks[i]) for i in range(4)])
    torch.testing.assert_close(frame_f_curves(logits, masks), loop_curves, rtol=1e-6, atol=1e-7)


# Two kinds of frame, each perfectly separable but at different thresholds: the "high" one for th in (0.6, 0.9],
# the "low" one for th in (0.1, 0.3]. At th in (0.1, 0.3] the high frame predicts all 4 pixels (F at
# precision 1/4) while the low one is perfect, the best any single threshold does for both.
HIGH = [[0.9, 0.6], [0.6, 0.6]]
LOW = [[0.3, 0.1], [0.1, 0.1]]
MIXED_LOGITS = _logits_of([HIGH, LOW, HIGH, LOW])
MIXED_MASKS = torch.tensor([[[1, 0], [0, 0]]] * 4)
ONE_SHARED_THRESHOLD_F = (1.0 + F_AT_PRECISION_QUARTER) / 2
MIXED_MIOU = (1 / 4 + 0.0) / 2  # high: all 4 pixels above 0.5 → IoU 1/4; low: none → IoU 0


def test_per_batch_f_depends_on_batch_size_and_the_split_f_does_not():
    singles = [(MIXED_LOGITS[i:i + 1], MIXED_MASKS[i:i + 1], _all(1)) for i in range(4)]
    one_batch = [(MIXED_LOGITS, MIXED_MASKS, _all(4))]
    per_batch_singles = _updated(AVSFScore(per_batch=True), singles)
    per_batch_one = _updated(AVSFScore(per_batch=True), one_batch)
    assert per_batch_singles == pytest.approx(1.0, rel=1e-6)  # each frame gets its own best threshold
    assert per_batch_one == pytest.approx(ONE_SHARED_THRESHOLD_F, rel=1e-6)
    assert abs(per_batch_singles - per_batch_one) > 1e-3
    assert _updated(AVSFScore(), singles) == pytest.approx(ONE_SHARED_THRESHOLD_F, rel=1e-6)
    assert _updated(AVSFScore(), one_batch) == pytest.approx(ONE_SHARED_THRESHOLD_F, rel=1e-6)


def test_per_batch_miou_averages_batch_means_and_the_split_miou_averages_frames():
    # batch 1: a perfect frame and a fully wrong one (mean 1/2); batch 2: a perfect frame (mean 1)
    masks = torch.tensor([[[1, 0], [0, 0]]] * 3, dtype=torch.float32)
    logits = _confident_logits([[[1, 0], [0, 0]], [[0, 1], [1, 1]], [[1, 0], [0, 0]]])
    batches = [(logits[:2], masks[:2], _all(2)), (logits[2:], masks[2:], _all(1))]
    assert _updated(AVSMeanIoU(per_batch=True), batches) == pytest.approx((0.5 + 1.0) / 2, rel=1e-6)
    assert _updated(AVSMeanIoU(), batches) == pytest.approx(2 / 3, rel=1e-6)


def test_frames_without_annotation_change_nothing():
    generator = torch.Generator().manual_seed(1)
    unannotated_logits = torch.randn(3, 2, 2, generator=generator) * 4
    unannotated_masks = (torch.rand(3, 2, 2, generator=generator) < 0.5).float()
    logits = torch.cat([unannotated_logits[:1], HAND_LOGITS, unannotated_logits[1:]])
    masks = torch.cat([unannotated_masks[:1], HAND_MASKS, unannotated_masks[1:]])
    annotated = torch.tensor([False, True, True, False, False])
    expected_f = _f_curve_by_loop(HAND_LOGITS[0], HAND_MASKS[0]).max().item()  # frame 1 has no object
    metrics = avs_metrics()
    for metric in metrics.values():
        metric.update(logits, masks, annotated)
    values = {name: metric.compute().item() for name, metric in metrics.items()}
    assert values["miou"] == pytest.approx(HAND_MIOU, rel=1e-6)
    assert values["miou_per_batch"] == pytest.approx(HAND_MIOU, rel=1e-6)
    assert values["fscore"] == pytest.approx(expected_f, rel=1e-6)
    assert values["fscore_split"] == pytest.approx(expected_f, rel=1e-6)


def test_a_frame_without_object_is_skipped_by_f_but_counted_by_miou():
    # frame 0: a perfect prediction of a one-pixel object; frame 1: no object, everything predicted
    masks = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.float32)
    logits = _confident_logits([[[1, 0], [0, 0]], [[1, 1], [1, 1]]])
    assert _updated(AVSMeanIoU(), [(logits, masks, _all(2))]) == pytest.approx(0.5, rel=1e-6)
    assert _updated(AVSFScore(), [(logits, masks, _all(2))]) == pytest.approx(1.0, rel=1e-6)
    # fed apart, the object-free batch scores 0 in the per-batch form, as Eval_Fmeasure's all-zero curve, and
    # counts in the mean; the split form has only the one frame with an object to score
    apart = [(logits[:1], masks[:1], _all(1)), (logits[1:], masks[1:], _all(1))]
    assert _updated(AVSFScore(per_batch=True), apart) == pytest.approx(0.5, rel=1e-6)
    assert _updated(AVSFScore(), apart) == pytest.approx(1.0, rel=1e-6)
    assert _updated(AVSMeanIoU(per_batch=True), apart) == pytest.approx(0.5, rel=1e-6)
    # a batch without any annotated frame (S4 training clips' frames 2–5) adds nothing to either form
    unannotated = [(logits[:1], masks[:1], _all(1)), (logits[1:], masks[1:], torch.zeros(1, dtype=torch.bool))]
    assert _updated(AVSFScore(per_batch=True), unannotated) == pytest.approx(1.0, rel=1e-6)


def test_the_four_metrics_stay_independent_inside_a_metric_collection():
    collection = MetricCollection(avs_metrics())  # default compute-group search on
    for i in range(4):
        collection.update(MIXED_LOGITS[i:i + 1], MIXED_MASKS[i:i + 1], _all(1))
    values = {name: value.item() for name, value in collection.compute().items()}
    assert values == pytest.approx({"miou": MIXED_MIOU, "miou_per_batch": MIXED_MIOU,
                                    "fscore": 1.0, "fscore_split": ONE_SHARED_THRESHOLD_F}, rel=1e-6)
