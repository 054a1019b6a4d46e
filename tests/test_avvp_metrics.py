"""LLP's F-scores on hand-made videos, and against a plain re-statement of the definitions on random ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avadapt.tasks.avvp.metrics import (
    FIGURES,
    AVVPFScores,
    decisions,
    event_runs,
    match_events,
    split_figures,
    video_f_scores,
)

C, T = 3, 10


def rows(*runs: tuple[int, int, int]) -> torch.Tensor:
    """(C, T) bool with class c on over [start, end) for each (c, start, end)."""
    matrix = torch.zeros(C, T, dtype=torch.bool)
    for c, start, end in runs:
        matrix[c, start:end] = True
    return matrix


def figures(audio, visual, audio_truth, visual_truth) -> dict[str, float]:
    return split_figures(video_f_scores(audio, visual, audio_truth, visual_truth))


def test_a_perfect_parse_scores_one_everywhere():
    audio, visual = rows((0, 0, 4), (1, 2, 10)), rows((1, 0, 6), (2, 7, 9))
    assert figures(audio, visual, audio, visual) == {name: 1.0 for name in FIGURES}


def test_an_empty_prediction_on_a_video_with_events_scores_zero():
    audio, visual = rows((0, 0, 4), (1, 2, 10)), rows((1, 0, 6))  # class 1 heard and seen over 2..6
    nothing = rows()
    assert figures(nothing, nothing, audio, visual) == {name: 0.0 for name in FIGURES}


def test_a_video_without_events_scores_one_unless_something_is_predicted():
    nothing = rows()
    assert figures(nothing, nothing, nothing, nothing) == {name: 1.0 for name in FIGURES}
    scores = figures(rows((2, 3, 5)), nothing, nothing, nothing)  # one class heard by mistake
    assert scores["segment_audio"] == scores["event_audio"] == 0.0
    assert scores["segment_visual"] == scores["segment_audio_visual"] == 1.0  # nothing predicted or present there
    assert scores["segment_event_av"] == 0.0  # the pooled counts of class 2 hold the false positive
    assert scores["segment_type_av"] == pytest.approx(2 / 3)


def test_segment_and_event_levels_on_a_partial_parse():
    truth = rows((0, 0, 4))
    # [2, 6) against [0, 4): segments TP 2, FP 2, FN 2 → 0.5; events IoU 2/6 < 0.5 → one FP and one FN → 0
    shifted = figures(rows((0, 2, 6)), rows(), truth, rows())
    assert shifted["segment_audio"] == 0.5 and shifted["event_audio"] == 0.0
    # [0, 3): segments TP 3, FN 1 → 6/7; events IoU 3/4 → TP → 1
    short = figures(rows((0, 0, 3)), rows(), truth, rows())
    assert short["segment_audio"] == pytest.approx(6 / 7) and short["event_audio"] == 1.0
    # class 0 right, class 1 wholly missed: the mean over the two classes
    missed = figures(rows((0, 0, 4)), rows(), rows((0, 0, 4), (1, 5, 10)), rows())
    assert missed["segment_audio"] == missed["event_audio"] == 0.5


def test_event_at_av_pools_audio_and_visual_counts_per_class():
    # class 0: audio TP 4 (perfect), visual FP 4 → pooled 2·4 / (2·4 + 4) = 2/3, where the mean of F would be 1/2
    scores = figures(rows((0, 0, 4)), rows((0, 0, 4)), rows((0, 0, 4)), rows())
    assert scores["segment_event_av"] == pytest.approx(2 / 3)
    assert scores["segment_audio"] == 1.0 and scores["segment_visual"] == 0.0


def test_events_are_maximal_runs_and_match_at_iou_one_half_ties_included():
    assert event_runs(torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 1, 1], dtype=torch.bool)) == [(0, 2), (3, 4), (6, 10)]
    assert event_runs(torch.zeros(10, dtype=torch.bool)) == []
    assert match_events([(0, 2)], [(0, 4)]) == (1, 0, 0)  # IoU exactly 0.5
    assert match_events([(0, 1)], [(0, 3)]) == (0, 1, 1)  # IoU 1/3


def test_many_to_one_matches_are_not_assigned_one_to_one():
    # two predictions overlapping the one event both count as true positives (the reference's event_wise_metric
    # judges every event list entry on its own) …
    assert match_events([(0, 3), (1, 4)], [(0, 4)]) == (2, 0, 0)
    # … and one prediction covers two events, neither missed
    assert match_events([(0, 4)], [(0, 3), (1, 4)]) == (1, 0, 0)


def test_decisions_need_the_segment_and_the_video_probability():
    segments = torch.tensor([[[0.9, 0.5, 0.2]]])  # (B=1, T=1, C=3)
    video = torch.tensor([[0.4, 0.5, 0.9]])
    assert decisions(segments, video).tolist() == [[[False], [True], [False]]]  # (B, C, T); ≥ 0.5 counts


def plain_f(predicted: np.ndarray, truth: np.ndarray, events: bool) -> tuple[list, list, list]:
    """Per-class TP, FP, FN written out from the definitions, with loops only."""
    tps, fps, fns = [], [], []
    for c in range(predicted.shape[0]):
        if not events:
            tps.append(int(sum(predicted[c] & truth[c])))
            fps.append(int(sum(predicted[c] & ~truth[c])))
            fns.append(int(sum(~predicted[c] & truth[c])))
            continue

        def runs(row):
            found, t = [], 0
            while t < len(row):
                if row[t]:
                    start = t
                    while t < len(row) and row[t]:
                        t += 1
                    found.append(set(range(start, t)))
                else:
                    t += 1
            return found

        guesses, actual = runs(predicted[c]), runs(truth[c])
        match = [[len(g & a) >= 0.5 * len(g | a) for a in actual] for g in guesses]
        tps.append(sum(any(m) for m in match))
        fps.append(sum(not any(m) for m in match))
        fns.append(sum(not any(match[i][j] for i in range(len(guesses))) for j in range(len(actual))))
    return tps, fps, fns


def plain_mean_f(tps, fps, fns) -> float:
    values = [2 * tp / (2 * tp + fp + fn) for tp, fp, fn in zip(tps, fps, fns) if tp + fp > 0 or tp + fn > 0]
    return sum(values) / len(values) if values else 1.0


def plain_video(pa, pv, ta, tv) -> dict[str, float]:
    scores = {}
    for level, events in (("segment", False), ("event", True)):
        a, v, av = plain_f(pa, ta, events), plain_f(pv, tv, events), plain_f(pa & pv, ta & tv, events)
        pooled = [[x + y for x, y in zip(a[k], v[k])] for k in range(3)]
        scores[f"{level}_audio"], scores[f"{level}_visual"] = plain_mean_f(*a), plain_mean_f(*v)
        scores[f"{level}_audio_visual"], scores[f"{level}_event_av"] = plain_mean_f(*av), plain_mean_f(*pooled)
        scores[f"{level}_type_av"] = (scores[f"{level}_audio"] + scores[f"{level}_visual"]
                                      + scores[f"{level}_audio_visual"]) / 3
    return scores


def test_the_metric_is_the_mean_over_videos_of_the_definitions_whatever_the_batching():
    rng = np.random.default_rng(0)
    videos = 40
    probs = torch.from_numpy(rng.random((videos, T, 2, 6))).float()  # audio, visual segment probabilities
    video_probs = torch.from_numpy(rng.random((videos, 6)) * 0.6 + 0.3).float()
    truth = torch.from_numpy(rng.random((videos, 2, 6, T)) < 0.3)
    audio, visual = decisions(probs[:, :, 0], video_probs), decisions(probs[:, :, 1], video_probs)

    expected = {name: 0.0 for name in FIGURES}
    for b in range(videos):
        for name, value in plain_video(audio[b].numpy(), visual[b].numpy(), truth[b, 0].numpy(),
                                       truth[b, 1].numpy()).items():
            expected[name] += value / videos

    whole, one_by_one = AVVPFScores(), AVVPFScores()
    whole.update(audio, visual, truth[:, 0], truth[:, 1])
    for b in range(videos):
        one_by_one.update(audio[b:b + 1], visual[b:b + 1], truth[b:b + 1, 0], truth[b:b + 1, 1])
    for metric in (whole, one_by_one):
        computed = {name: float(value) for name, value in metric.compute().items()}
        assert computed == pytest.approx(expected, abs=1e-6)  # figures are logged in float32
    assert 0 < expected["event_audio"] < 1 and expected["segment_audio"] != expected["event_audio"]


def test_shapes_must_agree():
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        AVVPFScores().update(rows()[None], rows()[None], rows(), rows())
