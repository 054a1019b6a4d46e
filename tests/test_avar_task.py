"""Action recognition: the real Kinetics-Sounds lists, VGGSound's csv format, every kind of bad input, the head's
loss and metrics on hand-made cases, the prediction result, and the AV-STFP rows against the poster."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avadapt._registry import DATASETS, METHODS
from avadapt.audio_front_ends import FbankConfig
from avadapt.data.transforms import VideoTransform
from avadapt.errors import AnnotationError, MediaError, MissingMediaError
from avadapt.models import parameter_report
from avadapt.param_table import CLIP_B16, CLIP_L14, build_as_published
from avadapt.tasks import get_task
from avadapt.tasks.avar.dataset import (
    ClipFolderDataset,
    KineticsSoundsDataset,
    VGGSoundDataset,
    read_segments,
)
from avadapt.tasks.avar.lists import (
    hold_out,
    read_folder_labels,
    read_label_list,
    read_vggsound_csv,
    split_clip_name,
)
from avadapt.tasks.avar.prepare import prepare_avar
from avadapt.tasks.avar.synth import class_grid, synthesize_avar
from avadapt.tasks.avar.task import AVARConfig, RecognitionHead
from avadapt.types import AVFeatures, FeatureSpec
from tests.media_helpers import SHARED_DATA, make_clip
from tests.zoo import BATCH, build, inputs

pytestmark = pytest.mark.usefixtures("one_thread")
KS = SHARED_DATA / "kinetics_sounds"
SMALL_FBANK = FbankConfig(num_mel_bins=32, target_frames=48)


def needs_ks():
    if not (KS / "my_train.txt").is_file():
        pytest.skip(f"shared Kinetics-Sounds lists not found at {KS}")


# ---- the real Kinetics-Sounds lists --------------------------------------------------------------------------------

def test_the_real_kinetics_sounds_lists_load_with_31_labels():
    needs_ks()
    train, test = read_label_list(KS / "my_train.txt"), read_label_list(KS / "my_test.txt")
    assert (len(train), len(test)) == (14_799, 2_597)
    assert {k for row in train + test for k in row.labels} == set(range(31))
    first = train[0]
    assert (first.clip, first.video_id, first.start, first.labels, first.line) == (
        "--4-0ihtnBU_000058_000068", "--4-0ihtnBU", 58.0, (4,), 1)
    assert (test[0].clip, test[0].video_id, test[0].start, test[0].labels) == ("-3Mwkq-7TV4_2", "-3Mwkq-7TV4", 2.0, (23,))
    # YouTube ids may hold "_": every test id splits into an 11-character id and its start
    assert all(len(row.video_id) == 11 and row.start is not None for row in test)
    assert sum("_" in row.video_id for row in test) > 0


def test_the_dataset_holds_out_a_stable_tenth_of_each_training_class_for_validation():
    needs_ks()
    lists = KineticsSoundsDataset.load_lists(KS)
    train, val, test = (lists.rows(s) for s in ("train", "val", "test"))
    assert len(lists.classes) == 31 and lists.classes[4] == "class 4"
    assert len(train) + len(val) == 14_799 and len(test) == 2_597
    assert not {r.clip for r in train} & {r.clip for r in val}
    listed = [r.labels[0] for r in read_label_list(KS / "my_train.txt")]
    for k, total in ((k, listed.count(k)) for k in range(31)):
        assert sum(r.labels[0] == k for r in val) == max(1, round(0.1 * total))
    again = KineticsSoundsDataset.load_lists(KS)
    assert [r.clip for r in again.rows("val")] == [r.clip for r in val]


def test_hold_out_does_not_depend_on_the_row_order(tmp_path):
    rows = read_label_list(_write(tmp_path / "a.txt", [f"c{i:03d}_1,10,{i % 2}" for i in range(40)]))
    _, held = hold_out(rows, 0.25)
    _, held_reversed = hold_out(rows[::-1], 0.25)
    assert len(held) == 10 and sum(r.labels == (0,) for r in held) == 5
    assert {r.clip for r in held} == {r.clip for r in held_reversed}


def test_clip_names_of_both_styles_and_others_split_into_video_and_start():
    assert split_clip_name("a_b_000010_000020") == ("a_b", 10.0)
    assert split_clip_name("abc_7") == ("abc", 7.0)
    assert split_clip_name("my-video") == ("my-video", None)


# ---- VGGSound's csv ------------------------------------------------------------------------------------------------

VGG_ROWS = ['---g-f_I2yQ,1,people marching,test', '--0PQM4-hqg,30,waterfall burbling,train',
            '--56QUhyDQM,185,"playing tennis, outdoors",train', '--5OkAjCI7g,40,people marching,train']


def test_vggsound_rows_name_clips_as_ogm_ge_does_with_sorted_classes(tmp_path):
    path = _write(tmp_path / "vggsound.csv", VGG_ROWS)
    classes, splits = read_vggsound_csv(path)
    assert classes == ["people marching", "playing tennis, outdoors", "waterfall burbling"]
    assert [r.clip for r in splits["train"]] == ["--0PQM4-hqg_30", "--56QUhyDQM_185", "--5OkAjCI7g_40"]
    assert [r.labels for r in splits["train"]] == [(2,), (1,), (0,)] and splits["test"][0].clip == "---g-f_I2yQ_1"
    _, padded = read_vggsound_csv(path, clip_name="{ytid}_{start:06d}")
    assert padded["test"][0].clip == "---g-f_I2yQ_000001"
    lists = VGGSoundDataset.load_lists(tmp_path, val_fraction=0.0)
    assert len(lists.rows("train")) == 3 and lists.rows("val") == []


@pytest.mark.parametrize(("row", "problem"), [
    ("abc,1,dog,valid", "split must be one of"),
    ("abc,x,dog,train", "start_seconds must be a whole number"),
    ("abc,1,dog", "expected 4 comma-separated fields"),
    ("abc,1,,train", "missing label"),
])
def test_bad_vggsound_rows_name_the_file_and_line(tmp_path, row, problem):
    path = _write(tmp_path / "vggsound.csv", [VGG_ROWS[1], row])
    with pytest.raises(AnnotationError, match=problem) as error:
        read_vggsound_csv(path)
    assert str(error.value).startswith(f"{path}:2:")


def test_vggsound_items_read_their_clip_and_give_a_class_or_a_multi_hot_target(tmp_path):
    _write(tmp_path / "vggsound.csv", VGG_ROWS)
    for row in VGG_ROWS:
        ytid, start = row.split(",")[:2]
        make_clip(tmp_path / f"{ytid}_{start}.mp4", seconds=2.0)
    options = {"val_fraction": 0.0, "transform": VideoTransform(), "fbank": SMALL_FBANK}
    item = VGGSoundDataset(tmp_path, "train", **options)[1]
    assert item["video"].shape[:2] == (10, 3) and item["audio"].shape == (10, 1, 32, 48)
    assert item["labels"].item() == 1 and item["meta"]["label"] == "playing tennis, outdoors"
    multi = VGGSoundDataset(tmp_path, "train", multi_label=True, **options)[1]["labels"]
    assert multi.tolist() == [0.0, 1.0, 0.0]


# ---- a folder of clips with a label file --------------------------------------------------------------------------

FOLDER_ROWS = ["clip,label", "walk,Dog", "bark,Dog;Speech", "talk,Speech,test", "cello_1,Cello"]


def test_a_clip_folder_reads_names_in_first_seen_order_and_rows_default_to_train(tmp_path):
    path = _write(tmp_path / "labels.csv", FOLDER_ROWS)
    classes, splits = read_folder_labels(path)
    assert classes == ["Dog", "Speech", "Cello"]
    assert [(r.clip, r.labels, r.line) for r in splits["train"]] == [
        ("walk", (0,), 2), ("bark", (0, 1), 3), ("cello_1", (2,), 5)]
    assert [r.clip for r in splits["test"]] == ["talk"] and "val" not in splits
    _write(tmp_path / "order.txt", ["Cello", "Speech", "Dog"])
    lists = ClipFolderDataset.load_lists(tmp_path, classes="order.txt", val_fraction=0.0)
    assert lists.classes == ["Cello", "Speech", "Dog"] and [r.labels for r in lists.rows("train")] == [(2,), (2, 1), (0,)]
    assert DATASETS.get("avar_folder") is ClipFolderDataset
    assert ClipFolderDataset.class_names(tmp_path) == ["Dog", "Speech", "Cello"]


def test_a_clip_folder_without_test_rows_has_an_empty_test_split_and_a_held_out_val(tmp_path):
    _write(tmp_path / "labels.csv", [f"c{i},{'ab'[i % 2]}" for i in range(20)])
    lists = ClipFolderDataset.load_lists(tmp_path)
    assert lists.rows("test") == [] and len(lists.rows("val")) == 2 and len(lists.rows("train")) == 18


@pytest.mark.parametrize(("row", "problem"), [
    ("bark,", "clip 'bark' has no label"),
    ("bark", "expected clip,label or clip,label,split, found 1"),
    ("bark,Dog,dev", "split must be one of"),
    ("walk,Dog", "clip 'walk' is listed twice \\(first on line 1\\)"),
    (",Dog", "empty clip name"),
    ("../bark,Dog", "cannot name a file"),
    ("bark,Dog;;Speech", "empty label"),
])
def test_a_bad_clip_folder_row_names_the_file_and_line(tmp_path, row, problem):
    path = _write(tmp_path / "labels.csv", ["walk,Dog", row])
    with pytest.raises(AnnotationError, match=problem) as error:
        read_folder_labels(path)
    assert str(error.value).startswith(f"{path}:2:")


def test_a_label_outside_the_class_file_or_a_folder_without_training_rows_is_an_error(tmp_path):
    path = _write(tmp_path / "labels.csv", ["walk,Dog", "bark,Cat"])
    _write(tmp_path / "classes.txt", ["Dog"])
    with pytest.raises(AnnotationError, match="unknown label 'Cat'") as error:
        ClipFolderDataset.load_lists(tmp_path, classes="classes.txt")
    assert str(error.value).startswith(f"{path}:2:")
    _write(tmp_path / "labels.csv", ["walk,Dog,test"])
    with pytest.raises(AnnotationError, match="no training rows"):
        ClipFolderDataset.load_lists(tmp_path)


def test_clip_folder_items_and_unlisted_media_reported_once_and_left_out(tmp_path):
    _write(tmp_path / "labels.csv", ["walk,Dog", "bark,Speech", "talk,Speech,val"])
    for clip in ("walk", "bark", "talk", "stray", "other"):
        make_clip(tmp_path / f"{clip}.mp4", seconds=2.0)
    options = {"transform": VideoTransform(), "fbank": SMALL_FBANK}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = ClipFolderDataset(tmp_path, "train", **options)
        ClipFolderDataset(tmp_path, "val", **options)
    reports = [str(w.message) for w in caught if "no row in" in str(w.message)]
    assert len(reports) == 1 and "2 clip(s)" in reports[0] and "other, stray" in reports[0]
    assert [r.clip for r in train.rows] == ["walk", "bark"]
    item = train[1]
    assert item["labels"].item() == 1 and item["meta"]["label"] == "Speech" and item["audio"].shape == (10, 1, 32, 48)
    (tmp_path / "bark.mp4").unlink()
    with pytest.raises(MissingMediaError, match="bark: expected .*bark.mp4"):
        ClipFolderDataset(tmp_path, "train", **options)


# ---- bad input: each names the file, the row and the problem --------------------------------------------------------

@pytest.mark.parametrize(("rows", "line", "problem"), [
    (["a_000001_000011,10,0", "b_000001_000011,10,3"], 2, "label index 3 is out of range \\(3 classes, 0..2\\)"),
    (["a_000001_000011,10,0", "b_000001_000011,10,-1"], 2, "label index -1 is out of range"),
    (["a_000001_000011,10,cycling"], 1, "unknown label 'cycling'"),
    (["a_000001_000011,10,0", "b_000001_000011,10"], 2, "expected 3 comma-separated fields"),
    (["a_000001_000011,,0"], 1, "missing seconds"),
    (["a_000001_000011,10,0", "a_000001_000011,10,1"], 2, "listed twice \\(first on line 1\\)"),
    (["a_000001_000011,0,0"], 1, "seconds must be a positive number"),
    (["../a,10,0"], 1, "cannot name a file"),
])
def test_a_bad_row_is_an_error_naming_the_file_and_line(tmp_path, rows, line, problem):
    path = _write(tmp_path / "my_train.txt", rows)
    with pytest.raises(AnnotationError, match=problem) as error:
        read_label_list(path, ["playing drums", "bowling", "singing"])
    assert str(error.value).startswith(f"{path}:{line}:")


def test_a_label_name_reads_as_its_index_with_a_class_file(tmp_path):
    _write(tmp_path / "classes.txt", ["playing drums", "bowling", "singing"])
    _write(tmp_path / "my_train.txt", ["a_000001_000011,10,bowling", "b_000001_000011,10,2"])
    _write(tmp_path / "my_test.txt", ["c_5,10,0"])
    lists = KineticsSoundsDataset.load_lists(tmp_path, val_fraction=0.0)
    assert [r.labels for r in lists.rows("train")] == [(1,), (2,)] and lists.classes[0] == "playing drums"


def test_without_a_class_file_a_test_label_beyond_the_training_labels_is_out_of_range(tmp_path):
    _write(tmp_path / "my_train.txt", ["a_000001_000011,10,0", "b_000001_000011,10,1"])
    test = _write(tmp_path / "my_test.txt", ["c_5,10,2"])
    with pytest.raises(AnnotationError, match="label index 2 is out of range") as error:
        KineticsSoundsDataset.load_lists(tmp_path)
    assert str(error.value).startswith(f"{test}:1:")


def test_a_clip_in_two_splits_is_an_error_naming_both_rows(tmp_path):
    train = _write(tmp_path / "my_train.txt", ["a_000001_000011,10,0", "b_000001_000011,10,1"])
    test = _write(tmp_path / "my_test.txt", ["c_5,10,0", "b_000001_000011,10,1"])
    with pytest.raises(AnnotationError, match=f"also listed at {train}:2") as error:
        KineticsSoundsDataset.load_lists(tmp_path, val_fraction=0.0)
    assert str(error.value).startswith(f"{test}:2:")


def test_several_labels_need_a_multi_label_head(tmp_path):
    path = _write(tmp_path / "my_train.txt", ["a_000001_000011,10,0;1", "b_000001_000011,10,1"])
    _write(tmp_path / "my_test.txt", ["c_5,10,0"])
    with pytest.raises(AnnotationError, match="has 2 labels; a single-label head reads one") as error:
        KineticsSoundsDataset(tmp_path, "train", val_fraction=0.0, transform=VideoTransform(), fbank=SMALL_FBANK)
    assert str(error.value).startswith(f"{path}:1:")


def test_missing_media_is_an_error_or_a_reported_skip_naming_the_clip_and_file(tmp_path):
    _write(tmp_path / "my_train.txt", ["a_000001_000011,10,0", "b_000001_000011,10,1"])
    _write(tmp_path / "my_test.txt", ["c_5,10,0"])
    make_clip(tmp_path / "a_000001_000011.mp4", seconds=2.0)
    options = {"val_fraction": 0.0, "transform": VideoTransform(), "fbank": SMALL_FBANK}
    with pytest.raises(MissingMediaError, match="b_000001_000011: expected .*b_000001_000011.mp4"):
        KineticsSoundsDataset(tmp_path, "train", **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = KineticsSoundsDataset(tmp_path, "train", on_missing="skip", **options)
    assert [r.clip for r in dataset.rows] == ["a_000001_000011"]
    assert any("b_000001_000011" in str(w.message) and "skipped" in str(w.message) for w in caught)


def test_a_clip_shorter_than_one_segment_is_reported_by_prepare_and_refused_by_the_reader(tmp_path):
    _write(tmp_path / "my_train.txt", ["long_000001_000003,3,0", "short_000001_000002,1,1"])
    _write(tmp_path / "my_test.txt", ["c_5,3,0"])
    make_clip(tmp_path / "long_000001_000003.mp4", seconds=3.0)
    short = make_clip(tmp_path / "short_000001_000002.mp4", seconds=0.5)
    make_clip(tmp_path / "c_5.mp4", seconds=3.0)
    with pytest.raises(MediaError, match="0.5. s long, shorter than one segment \\(1 s of audio\\)"):
        read_segments(short, SMALL_FBANK)
    summary = prepare_avar(KineticsSoundsDataset, tmp_path, tmp_path / "cache", image_size=32, fbank=SMALL_FBANK,
                           progress=False, val_fraction=0.0)
    assert summary.done == 2 and [(b.video_id, b.path) for b in summary.failed] == [("short_000001_000002", short)]
    bad = (tmp_path / "cache" / "bad_clips.tsv").read_text()
    assert "short_000001_000002" in bad and "shorter than one segment" in bad
    again = prepare_avar(KineticsSoundsDataset, tmp_path, tmp_path / "cache", image_size=32, fbank=SMALL_FBANK,
                         progress=False, val_fraction=0.0)
    assert (again.done, again.skipped_existing) == (0, 2)  # resumable


def test_clips_of_any_length_are_read_as_ten_segments_spread_over_the_clip(tmp_path):
    for seconds in (3.0, 7.0):  # at 5 fps no segment middle falls near a frame change
        frames, fbank, length = read_segments(make_clip(tmp_path / f"{seconds}.mp4", seconds=seconds, fps=5),
                                              SMALL_FBANK)
        assert frames.shape[0] == 10 and fbank.shape == (10, 1, 32, 48) and length == pytest.approx(seconds, abs=0.1)
        # segment t's frame is the one on screen at the middle of its tenth (index-coded brightness)
        expected = [math.floor((t + 0.5) * seconds / 10 * 5) for t in range(10)]
        assert [round(float(f.mean()) / 6) for f in frames] == expected


# ---- head, loss and metrics ---------------------------------------------------------------------------------------

SPEC = FeatureSpec(dim=4, modalities=("video", "audio"), num_segments=3, map_dims=(4,), map_strides=(16,),
                   image_size=(32, 32), family="vit")


def test_the_clip_logits_are_the_mean_of_the_segment_logits_and_the_head_size_follows_the_classes():
    torch.manual_seed(0)
    head = RecognitionHead(SPEC, AVARConfig(num_classes=7, hidden_dim=5)).eval()
    features = AVFeatures(video=torch.randn(2, 3, 4), audio=torch.randn(2, 3, 4))
    out = head(features)
    assert out.logits.shape == (2, 7) and out.segment_logits.shape == (2, 3, 7)
    torch.testing.assert_close(out.segment_logits.mean(1), out.logits)
    assert sum(p.numel() for p in head.parameters()) == 8 * 5 + 5 + 5 * 7 + 7
    linear = RecognitionHead(SPEC, AVARConfig(num_classes=7, hidden_dim=0))
    assert sum(p.numel() for p in linear.parameters()) == 8 * 7 + 7


def test_loss_and_top_k_accuracy_on_a_hand_made_case():
    head = RecognitionHead(SPEC, AVARConfig(num_classes=6))
    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1],    # label 0: top-1
                           [6.0, 5, 4, 3, 2, 1],    # label 4: fifth
                           [6.0, 5, 4, 3, 2, 1]])   # label 5: sixth
    labels = torch.tensor([0, 4, 5])
    from avadapt.tasks.avar.task import RecognitionOutput

    out = RecognitionOutput(logits, logits[:, None].expand(-1, 3, -1))
    log_norm = math.log(sum(math.exp(v) for v in range(1, 7)))
    expected = ((log_norm - 6) + (log_norm - 2) + (log_norm - 1)) / 3
    assert head.loss(out, {"labels": labels}).item() == pytest.approx(expected, rel=1e-6)
    metrics = head.metrics()
    head.update_metrics(metrics, out, {"labels": labels})
    result = metrics.compute()
    assert result["accuracy"].item() == pytest.approx(1 / 3) and result["top5_accuracy"].item() == pytest.approx(2 / 3)


def test_multi_label_counts_a_hit_on_any_label_and_scores_map():
    head = RecognitionHead(SPEC, AVARConfig(num_classes=6, multi_label=True))
    from avadapt.tasks.avar.task import RecognitionOutput

    logits = torch.tensor([[6.0, 5, 4, 3, 2, 1], [1.0, 2, 3, 4, 5, 6]])
    labels = torch.tensor([[0, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.float)
    out = RecognitionOutput(logits, logits[:, None], multi_label=True)
    assert head.loss(out, {"labels": labels}).item() == pytest.approx(
        F.binary_cross_entropy(torch.sigmoid(logits), labels).item(), rel=1e-6)
    metrics = head.metrics()
    head.update_metrics(metrics, out, {"labels": labels})
    result = metrics.compute()
    # clip 0: best label 1 is second (hit@5, not hit@1); clip 1: label 5 is first
    assert result["accuracy"].item() == pytest.approx(0.5) and result["top5_accuracy"].item() == 1.0
    # per class with positives: class 1 (clip 0 ranks above clip 1): AP 1; class 5: clip 1 first, clip 0 second: AP 1
    assert result["map"].item() == pytest.approx(1.0)


def test_labels_of_the_wrong_form_are_refused():
    head = RecognitionHead(SPEC, AVARConfig(num_classes=6))
    from avadapt.tasks.avar.task import RecognitionOutput

    out = RecognitionOutput(torch.zeros(2, 6), torch.zeros(2, 3, 6))
    with pytest.raises(ValueError, match="one class index per clip"):
        head.loss(out, {"labels": torch.zeros(2, 6)})


@pytest.mark.parametrize("method", sorted(METHODS.names()))
def test_every_method_trains_with_the_recognition_head(method):
    model = build("vit", method, task="avar", num_classes=5)
    outputs = model(*inputs(model))
    assert outputs.logits.shape == (BATCH, 5)
    model.head.loss(outputs, {"labels": torch.tensor([0, 3])}).backward()
    trained = {name.split(".")[0] for name, p in model.named_parameters()
               if p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0}
    assert "head" in trained and (method == "probe" or "method" in trained)


# ---- prediction --------------------------------------------------------------------------------------------------

def test_the_prediction_lists_the_top_five_and_ranks_the_annotated_class(tmp_path):
    task = get_task("avar")
    clip = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.02, 0.08, 0.04])
    segments = torch.linspace(0, 1, 10)[:, None].expand(-1, 7)
    info = {"video": "clip.mp4", "duration": 8.0, "segment_seconds": 0.8, "class_names": list("abcdefg")}
    frames = torch.zeros(10, 32, 32, 3, dtype=torch.uint8)
    result, write = task.prediction_result({"clip": clip, "segments": segments}, frames, info, ground_truth="c")
    assert [c["label"] for c in result["classes"]] == ["b", "d", "c", "f", "a"]
    assert result["rank"] == 3 and result["correct"] is False and "rank 3" in result["agreement"]
    assert result["top_class_over_time"] == pytest.approx(segments[:, 1].tolist(), abs=1e-5)
    write(tmp_path / "out", result)
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


# ---- synthetic set ------------------------------------------------------------------------------------------------

def test_class_grid_leaves_a_quarter_of_the_classes_solo():
    assert class_grid(16) == (4, 3, 4) and class_grid(5) == (2, 2, 1)
    with pytest.raises(ValueError, match="at least 5 classes"):
        class_grid(4)


def test_synthetic_pairs_need_both_streams_and_solo_actions_either(tmp_path):
    summary = synthesize_avar(tmp_path, clips=18, seed=3, num_classes=6, size=32, seconds=(2, 3))
    assert summary.rows == 18 and summary.splits["test"] >= 1
    lists = KineticsSoundsDataset.load_lists(tmp_path, val_fraction=0.0)
    assert len(lists.classes) == 6 and all(Path(tmp_path / f"{c}.mp4").is_file() for c in lists.clips())
    assert all(re.search(r"_\d{6}_\d{6}$", r.clip) for r in lists.rows("train"))
    assert all(re.search(r"_\d{1,3}$", r.clip) for r in lists.rows("test"))
    pictures, sounds, _ = class_grid(6)
    pairs = [(int(n.split()[1]), int(n.split()[-1])) for n in lists.classes]
    grid = pairs[: pictures * sounds]
    assert all(sum(p == q for q, _ in grid) == sounds and sum(s == t for _, t in grid) == pictures for p, s in grid)
    solo = pairs[pictures * sounds:]
    assert all(sum(p == q for q, _ in pairs) == 1 and sum(s == t for _, t in pairs) == 1 for p, s in solo)


def test_avadapt_synth_avar_writes_the_native_layout(tmp_path, capsys):
    from avadapt.cli import main

    main(["synth", "avar", "--out", str(tmp_path), "--clips", "5", "--classes", "5"])
    assert "synthesize_avar: 5 clips" in capsys.readouterr().out
    assert len(KineticsSoundsDataset.load_lists(tmp_path).clips()) == 5 and len(list(tmp_path.glob("*.mp4"))) == 5


# ---- parameter rows ------------------------------------------------------------------------------------------------

POSTER = {CLIP_B16: 1.10e6, CLIP_L14: 1.82e6}  # the AV-STFP poster's recognition rows, Kinetics-Sounds


@pytest.mark.parametrize(("backbone", "dim", "depth", "heads"), [(CLIP_B16, 768, 12, 12), (CLIP_L14, 1024, 24, 16)])
def test_av_stfp_recognition_rows_against_the_poster(backbone, dim, depth, heads):
    trainable = parameter_report(build_as_published(backbone, "av_stfp", "avar"))["trainable"]
    # both streams, per layer: T time codes, 4 spatial and 1 fusion token, one gate per head and prompt type;
    # the last layer sends no fusion token, the first receives none (no fusion gates)
    prompts = 2 * ((10 + 4 + 1) * dim * depth - dim + 3 * heads * depth - heads)
    head = 2 * dim * 512 + 512 + 512 * 31 + 31
    assert trainable == prompts + head
    # the poster gives two decimals: ours, at its precision, lies within 0.02M of its figure
    assert abs(round(trainable / 1e6, 2) - POSTER[backbone] / 1e6) <= 0.02 + 1e-9


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(f"{row}\r\n" for row in rows))
    return path
