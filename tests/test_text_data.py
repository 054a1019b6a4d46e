"""The data side of classification from class names: class files and prompts, few-shot selections, the scores on
hand-made logits (the reference's forms and the ones beside them), and the t-SNE picture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avadapt.errors import AnnotationError, OptionError
from avadapt.text.classes import PromptTemplates, dataset_classes, read_class_file, readable_name
from avadapt.text.embed import embedding_picture
from avadapt.text.evaluate import (
    ave_clip_accuracy,
    ave_segment_accuracy,
    clip_accuracy,
    multilabel_clip_scores,
)
from avadapt.text.shots import ShotSelection, sample_shots

# ---- class names and prompts ---------------------------------------------------------------------------------------


def test_a_class_file_reads_one_name_a_line_with_trailing_blank_lines(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("Dog\n Frying_(food) \r\nCello\n\n\n", encoding="utf-8")
    assert read_class_file(path) == ["Dog", "Frying_(food)", "Cello"]


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("Dog\n\nCello\n", 2, "empty class name before the last one"),
    ("Dog\nCello\nDog\n", 3, "class 'Dog' is listed twice \\(first on line 1\\)"),
])
def test_a_blank_line_inside_or_a_repeated_name_is_an_error_naming_the_file_and_lines(tmp_path, text, line, problem):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=problem) as error:
        read_class_file(path)
    assert str(error.value).startswith(f"{path}:{line}:") and "\n" not in str(error.value)


def test_readable_names_turn_underscores_into_spaces_and_keep_case():
    assert readable_name("Frying_(food)") == "Frying (food)"
    assert readable_name("Baby_cry_infant_cry") == "Baby cry infant cry"
    assert readable_name("Church bell") == "Church bell"


def test_prompts_follow_the_reference_templates():
    templates = PromptTemplates()
    assert templates.clip_context == "a photo of a"
    assert templates.clip_prompts(["Frying_(food)", "Dog"], background=True) == [
        "a photo of a Frying (food).", "a photo of a Dog.", "a photo of a background."]
    assert templates.clap_prompts(["Frying_(food)"]) == ["The sounds of Frying_(food)"]
    assert templates.clap_prompts(["Dog"], background=True) == ["The sounds of Dog", "The sounds of background"]
    assert PromptTemplates.from_dict(templates.to_dict()) == templates
    with pytest.raises(OptionError, match="must hold one"):
        PromptTemplates(clap="The sounds of")


def test_dataset_class_names_come_from_the_registry_without_a_background_entry(tmp_path):
    llp, background = dataset_classes("llp", tmp_path)
    assert len(llp) == 25 and llp[5] == "Frying_(food)" and background is None
    (tmp_path / "Annotations.txt").write_text(
        "Category&VideoID&Quality&StartTime&EndTime\nChurch bell&a&good&0&10\nDog barking&b&good&2&5\n")
    assert dataset_classes("ave", tmp_path) == (["Church bell", "Dog barking"], "background")
    (tmp_path / "labels.csv").write_text("walk,Dog_barking\nsing,Singing\n")
    assert dataset_classes("avar_folder", tmp_path) == (["Dog_barking", "Singing"], None)


# ---- few-shot selections -------------------------------------------------------------------------------------------

NAMES = ["Speech", "Dog", "Cello"]


def _counts(labels, indices, num_classes):
    counts = [0] * num_classes
    for i in indices:
        for k in ([labels[i]] if isinstance(labels[i], int) else labels[i]):
            counts[k] += 1
    return counts


def test_single_label_shots_are_exactly_k_per_class_seeded_and_deterministic():
    labels = [i % 3 for i in range(30)]
    first = sample_shots(labels, 4, seed=0, class_names=NAMES, source="train")
    assert len(first.indices) == 12 == len(set(first.indices))
    assert _counts(labels, first.indices, 3) == [4, 4, 4] and first.counts == dict.fromkeys(NAMES, 4)
    assert sample_shots(labels, 4, seed=0, class_names=NAMES, source="train") == first
    assert sample_shots(labels, 4, seed=1, class_names=NAMES, source="train").indices != first.indices


def test_without_a_seed_the_first_k_clips_of_each_class_are_taken_as_the_reference_does():
    labels = [i % 3 for i in range(30)]
    selection = sample_shots(labels, 2, seed=None, class_names=NAMES, source="train")
    assert selection.indices == [0, 1, 2, 3, 4, 5]


def test_multi_label_clips_count_for_each_of_their_classes_and_rare_classes_are_filled_first():
    # Cello is only in clips 0 and 1, which also hold Speech; filling Speech first from its single-label clips
    # could leave Cello short, rarest-first cannot
    labels = [{0, 2}, {0, 2}, {0}, {0}, {0}, {1}, {1}, {1}, {0, 1}]
    for seed in range(5):
        selection = sample_shots(labels, 2, seed=seed, class_names=NAMES, source="train")
        assert sorted(selection.indices[:2]) == [0, 1] and len(set(selection.indices)) == len(selection.indices)
        assert _counts(labels, selection.indices, 3) == [2, 2, 2] == list(selection.counts.values())


def test_where_k_per_class_is_impossible_no_class_passes_k_and_the_counts_say_so():
    labels = [{0, 1}, {1, 2}, {0, 2}]  # each clip fills two of the three classes
    selection = sample_shots(labels, 1, seed=0, class_names=NAMES, source="train")
    assert len(selection.indices) == 1 and sorted(selection.counts.values()) == [0, 1, 1]


def test_more_shots_than_the_smallest_class_has_is_one_clear_line():
    labels = [0] * 20 + [1] * 9 + [2] * 30
    with pytest.raises(OptionError) as error:
        sample_shots(labels, 16, seed=0, class_names=NAMES, source="llp/train.csv")
    assert str(error.value) == "--shots 16 is more than the 9 training clips of class 'Dog' in llp/train.csv"


def test_a_selection_round_trips_through_json():
    selection = sample_shots([{0, 1}, {2}, {1}, {0}, {2, 0}], 1, seed=3, class_names=NAMES, source="x")
    again = ShotSelection.from_json(selection.to_json())
    assert again == selection and list(again.counts) == NAMES


# ---- scores --------------------------------------------------------------------------------------------------------

def test_segment_accuracy_without_background_never_gets_a_background_second_right():
    labels = torch.tensor([[0, 1, 3, 3]])  # C = 3 events; 3 = background
    perfect_events = torch.tensor([[[9.0, 0, 0], [0, 9, 0], [0, 0, 0], [0, 0, 0]]])
    scores = ave_segment_accuracy(perfect_events, labels, "none")
    assert (scores.accuracy, scores.event_accuracy, scores.background_accuracy, scores.segments) == (0.5, 1.0, 0.0, 4)


def test_segment_accuracy_with_a_threshold_calls_unsure_seconds_background():
    labels = torch.tensor([[0, 1, 3, 3]])
    logits = torch.tensor([[[5.0, 0, 0], [0, 0, 5], [0, 0, 0], [0, 5, 0]]])
    # max softmax probability: e^5 / (e^5 + 2) = 0.987 for rows 0, 1, 3; 1/3 for row 2
    scores = ave_segment_accuracy(logits, labels, "threshold", threshold=0.5)
    assert (scores.accuracy, scores.event_accuracy, scores.background_accuracy) == (0.5, 0.5, 0.5)
    strict = ave_segment_accuracy(logits, labels, "threshold", threshold=0.99)  # row 0 is unsure now: wrong
    assert (strict.accuracy, strict.event_accuracy, strict.background_accuracy) == (0.5, 0.0, 1.0)


def test_segment_accuracy_with_a_background_prompt_reads_the_last_column():
    labels = torch.tensor([[0, 3, 3], [2, 2, 3]])
    logits = torch.tensor([[[1.0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]],
                           [[0, 0, 1, 2], [0, 0, 1, 0], [0, 0, 0, 1]]])
    scores = ave_segment_accuracy(logits, labels, "prompt")
    assert scores.accuracy == pytest.approx(4 / 6)
    assert (scores.event_accuracy, scores.background_accuracy) == (2 / 3, 2 / 3)
    with pytest.raises(ValueError, match="in 0..2"):
        ave_segment_accuracy(logits[..., :3], labels, "prompt")
    with pytest.raises(OptionError, match="background must be one of"):
        ave_segment_accuracy(logits, labels, "ignore")


def test_clip_accuracy_on_ave_takes_the_first_event_class_and_the_time_mean_and_skips_clips_without_events():
    labels = torch.tensor([[3, 1, 1, 2], [3, 3, 3, 3], [2, 2, 0, 0]])
    logits = torch.zeros(3, 4, 3)
    logits[0, 0] = torch.tensor([0.0, 10, 0])  # one loud second for class 1; three quiet ones for class 2
    logits[0, 1:] = torch.tensor([0.0, 0, 1])  # mean [0, 2.5, 0.75]: class 1, though most seconds say 2
    logits[2] = torch.tensor([1.0, 0, 0])  # clip 2 is class 2 (its first event second)
    scores = ave_clip_accuracy(logits, labels)
    assert (scores.accuracy, scores.clips, scores.skipped) == (0.5, 2, 1)


def test_multilabel_scores_differ_between_the_reference_form_and_the_hit_form():
    targets = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    mean = torch.tensor([[0.0, 1, 3, 0], [5, 2, 0, 0], [1, 0, 0, 0]])
    logits = torch.stack([2 * mean, torch.zeros_like(mean)], 1)  # (N, T=2, C): time-mean = mean
    scores = multilabel_clip_scores(logits, targets)
    # clip 0: top class 2 is one of its classes, but not its first (1); clip 1: top 0 is its only class
    assert (scores.top1_hit, scores.reference_top1, scores.clips, scores.skipped) == (1.0, 0.5, 2, 1)
    # AP per class with a positive: class 0: its clip ranks first (1); class 1: clip 0 (score 1) ranks under clip 1
    # (score 2), precision 1/2; class 2: first (1). Class 3 has no positive and does not count.
    assert scores.mAP == pytest.approx((1 + 0.5 + 1) / 3)


def test_top_1_and_top_5_clip_accuracy():
    logits = torch.tensor([6.0, 5, 4, 3, 2, 1]).expand(3, 2, 6)
    scores = clip_accuracy(logits, torch.tensor([0, 4, 5]))
    assert (scores.top1, scores.top5, scores.clips) == (pytest.approx(1 / 3), pytest.approx(2 / 3), 3)
    assert clip_accuracy(logits[..., :3], torch.tensor([2, 2, 2])).top5 == 1.0
    assert math.isnan(clip_accuracy(torch.zeros(0, 2, 3), torch.zeros(0, dtype=torch.long)).top1)


# ---- picture -------------------------------------------------------------------------------------------------------

def test_the_embedding_picture_has_one_panel_per_model_and_works_with_few_clips(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)  # 12 clips
    panels = {"frozen encoders": (rng.normal(size=(12, 8)), labels),
              "adapted": (rng.normal(size=(12, 8)) + 5 * labels[:, None], labels)}
    path = embedding_picture(panels, NAMES, tmp_path / "tsne.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)  # two 5-inch panels + the legend at 80 dpi
    many = [f"class {k}" for k in range(25)]
    one = embedding_picture({"adapted": (rng.normal(size=(30, 4)), np.arange(30) % 25)}, many, tmp_path / "one.png")
    with Image.open(one) as image:
        assert image.size == (400, 400)
    with pytest.raises(ValueError, match="as many labels as features"):
        embedding_picture({"x": (np.zeros((5, 2)), np.zeros(4))}, NAMES, tmp_path / "bad.png")


def test_class_file_path_is_named_once(tmp_path):
    with pytest.raises(AnnotationError, match="not found") as error:
        read_class_file(tmp_path / "none.txt")
    assert str(error.value).startswith(str(Path(tmp_path / "none.txt")))
