"""LLP: the real annotation files and their quirks, malformed files, the media layouts, and prepare → cache →
dataset."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avadapt.data.base import collate_av
from avadapt.data.media import read_clip
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import AnnotationError, MissingMediaError
from avadapt.tasks.avvp.dataset import (
    DENSE_FILES,
    LLP_CLASSES,
    WEAK_FILES,
    LLPAnnotations,
    LLPDataset,
    LLPDataWarning,
    read_dense_labels,
    read_weak_labels,
)
from avadapt.tasks.avvp.prepare import prepare_llp
from avadapt.tasks.avvp.synth import synthesize_llp
from tests.media_helpers import SHARED_DATA, write_wav

LLP = SHARED_DATA / "llp"
SIZE = 32
SMALL = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE), crop_pct=1.0))


def needs_llp() -> None:
    if not (LLP / WEAK_FILES["train"]).is_file():
        pytest.skip(f"shared LLP files not found at {LLP}")


def copy_annotations(target: Path) -> Path:
    needs_llp()
    target.mkdir(parents=True, exist_ok=True)
    for name in (*WEAK_FILES.values(), *DENSE_FILES.values()):
        shutil.copy(LLP / name, target / name)
    return target


def load_quietly(root: Path) -> LLPAnnotations:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLPDataWarning)
        return LLPAnnotations.load(root)


def test_the_real_files_load_with_their_counts_and_quirks_reported_once(tmp_path):
    root = copy_annotations(tmp_path / "llp")
    with pytest.warns(LLPDataWarning) as reported:
        annotations = LLPAnnotations.load(root)
    assert [len(annotations.rows(split)) for split in ("train", "val", "test")] == [10000, 649, 1200]
    audio, visual = annotations.dense["audio"], annotations.dense["visual"]
    # 4,131 audio rows over 1,848 names (6 of the rows mark no second), 2,495 visual rows over 1,665 names
    assert sum(map(len, audio.values())) == 4131 - 6 and sum(map(len, visual.values())) == 2495
    assert len(audio) + 1 == 1848 and len(visual) == 1665  # one name has only an empty row (CSWQ_HzQ_10_20)
    notes = [str(w.message) for w in reported]
    assert len(notes) == 3
    empty = next(n for n in notes if "mark no second" in n)
    assert "AVVP_eval_audio.csv: 6 row(s)" in empty and "line 3770 (8DF2PxdT5tE_390_400, 9–0 s, Cheering)" in empty
    unknown = [n for n in notes if "in no split file" in n]
    assert any("AVVP_eval_audio.csv: 8 filename(s)" in n and "19jWnmYnlD8_30_400" in n for n in unknown)
    assert any("AVVP_eval_visual.csv: 7 filename(s)" in n for n in unknown)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read again: no second report
        assert LLPAnnotations.load(root) is annotations
    # weak labels: every class of the reference's 25 occurs, and the splits hold different videos
    assert {name for rows in annotations.weak.values() for row in rows for name in row.labels} == set(LLP_CLASSES)
    ids = [{row.video_id for row in rows} for rows in annotations.weak.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_dense_rows_become_per_second_matrices_as_the_reference_slices_them(tmp_path):
    annotations = load_quietly(copy_annotations(tmp_path / "llp"))
    audio, visual = annotations.segment_labels("8DF2PxdT5tE_390_400")
    basketball, speech, cheering = (LLP_CLASSES.index(n) for n in ("Basketball_bounce", "Speech", "Cheering"))
    assert audio.shape == visual.shape == (25, 10) and audio.dtype == torch.bool
    assert audio[basketball].tolist() == [t in range(2, 8) for t in range(10)]
    assert audio[speech].tolist() == [t < 2 or t >= 7 for t in range(10)]
    assert not audio[cheering].any()  # its row runs 9 → 0: GT[c, 9:0] sets nothing
    assert visual[speech].tolist() == [t in (7, 9) for t in range(10)]
    assert (audio & visual)[speech].nonzero().flatten().tolist() == [7, 9]
    assert audio.sum() == 6 + 5 and visual.sum() == 6 + 2
    assert annotations.weak_target(next(r for r in annotations.rows("val") if r.filename == "8DF2PxdT5tE_390_400")
                                   ).nonzero().flatten().tolist() == sorted([basketball, speech, cheering])


def test_the_audio_file_from_before_its_fix_is_named_and_its_videos_lose_those_rows(tmp_path):
    root = copy_annotations(tmp_path / "llp")
    lines = (root / DENSE_FILES["audio"]).read_text().splitlines()
    assert lines[929].startswith("JfZEqeLZqWk_30_40\t0\t4\tSpeech")  # line 930 of the fixed file
    lines[929] = lines[929].replace("JfZEqeLZqWk_30_40", "Baby_cry_infant_cry")
    lines[930] = lines[930].replace("JfZEqeLZqWk_30_40", "Baby_cry_infant_cry")
    lines[2448] = lines[2448].replace("KvIjsmANkxI_10_20", "KvIjsmANkxI_10_20`")
    (root / DENSE_FILES["audio"]).write_text("\n".join(lines) + "\n")
    with pytest.warns(LLPDataWarning, match=r"3 row\(s\) whose filename is no video name: line 930 "
                                            r"\('Baby_cry_infant_cry'\).*before its fix.*Use the fixed file"):
        annotations = LLPAnnotations.load(root)
    audio, _ = annotations.segment_labels("JfZEqeLZqWk_30_40")
    assert not audio[LLP_CLASSES.index("Speech")].any() and audio[LLP_CLASSES.index("Baby_cry_infant_cry")].all()


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("AVVP_train.csv", "filename,event_labels\nBjCEufrlXm4_20_30,Speech\n", r":1: comma-separated .*tab-separated"),
    ("AVVP_train.csv", "filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech,Dgo\n", r":2: unknown class 'Dgo'"),
    ("AVVP_train.csv", "filename\tevent_labels\nBjCEufrlXm4_20_30\t\n", r":2: BjCEufrlXm4_20_30: empty label list"),
    ("AVVP_train.csv", "filename\tevent_labels\na_0_10\tSpeech\nb_0_10\tDog\na_0_10\tCat\n",
     r":4: duplicate filename 'a_0_10' \(first on line 2\)"),
    ("AVVP_eval_audio.csv", "filename\tonset\toffset\tevent_labels\na_0_10\t3\t12\tDog\n",
     r":2: a_0_10: onset 3 and offset 12 must lie within the clip's 0..10 s"),
    ("AVVP_eval_audio.csv", "filename\tonset\toffset\tevent_labels\na_0_10\t0\t4\tDog\na_0_10,0,4,Cat\n",
     r":3: comma-separated"),
    ("AVVP_eval_visual.csv", "filename\tonset\toffset\tevent_labels\na_0_10\tzero\t4\tDog\n", r":2: .*whole seconds"),
])
def test_malformed_files_name_the_file_the_line_and_the_problem(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    reader = read_weak_labels if name in WEAK_FILES.values() else read_dense_labels
    with pytest.raises(AnnotationError, match=rf"{path.name}{problem}"):
        reader(path)


def test_an_onset_after_its_offset_is_a_reported_skip(tmp_path):
    (tmp_path / "AVVP_val_pd.csv").write_text("filename\tevent_labels\nabcdefghijk_0_10\tDog\n")
    for name, rows in DENSE_FILES.items():
        body = "abcdefghijk_0_10\t6\t2\tDog\nabcdefghijk_0_10\t0\t2\tDog\n" if name == "audio" else ""
        (tmp_path / rows).write_text("filename\tonset\toffset\tevent_labels\n" + body)
    with pytest.warns(LLPDataWarning, match=r"AVVP_eval_audio.csv: 1 row\(s\) mark no second .* line 2 "
                                            r"\(abcdefghijk_0_10, 6–2 s, Dog\)"):
        annotations = LLPAnnotations.load(tmp_path)
    audio, _ = annotations.segment_labels("abcdefghijk_0_10")
    assert audio[LLP_CLASSES.index("Dog")].nonzero().flatten().tolist() == [0, 1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("llp")
    synthesize_llp(root, clips=9, seed=2, num_classes=4, size=32)
    return root


def test_synthetic_llp_holds_events_heard_seen_and_both_in_the_released_format(synthetic):
    annotations = load_quietly(synthetic)
    counts = [len(annotations.rows(split)) for split in ("train", "val", "test")]
    assert sum(counts) == 9 and min(counts) >= 1
    kinds = set()
    for split in ("val", "test"):
        for row in annotations.rows(split):
            audio, visual = annotations.segment_labels(row.filename)
            present = torch.tensor([LLP_CLASSES.index(n) for n in row.labels])
            assert (audio.any(-1) | visual.any(-1)).nonzero().flatten().tolist() == present.tolist()
            kinds |= {"heard only" if a and not v else "seen only" if v and not a else "both"
                      for a, v in zip(audio.any(-1)[present].tolist(), visual.any(-1)[present].tolist())}
    assert len(kinds) >= 2
    assert not any(annotations.dense[m].get(row.filename) for m in DENSE_FILES for row in annotations.rows("train"))


def test_items_carry_weak_labels_and_dense_matrices_from_the_mp4_layout(synthetic):
    train = LLPDataset(synthetic, "train", transform=SMALL)
    test = LLPDataset(synthetic, "test", transform=SMALL)
    item = train[0]
    assert item["video"].shape == (10, 3, SIZE, SIZE) and item["audio"].dim() == 4
    assert item["labels"].shape == (25,) and "audio_labels" not in item
    batch = collate_av([test[i] for i in range(len(test))])
    assert batch.targets["audio_labels"].shape == (len(test), 25, 10)
    expected = torch.stack([torch.stack(test.annotations.segment_labels(r.filename)) for r in test.items])
    assert torch.equal(torch.stack([batch.targets["audio_labels"], batch.targets["visual_labels"]], 1), expected)


def test_missing_media_is_an_error_naming_the_video_or_a_skip(synthetic, tmp_path):
    root = tmp_path / "llp"
    shutil.copytree(synthetic, root)
    row = load_quietly(root).rows("train")[0]
    missing = root / "LLP_dataset" / "video" / f"{row.video_id}.mp4"
    missing.unlink()
    with pytest.raises(MissingMediaError, match=rf"{row.video_id}: expected {missing}"):
        LLPDataset(root, "train", transform=SMALL)
    with pytest.warns(UserWarning, match="skipped"):
        kept = LLPDataset(root, "train", transform=SMALL, on_missing="skip")
    assert row.filename not in {r.filename for r in kept.items}
    summary = prepare_llp(root, tmp_path / "cache", image_size=SIZE, progress=False)
    assert [bad.video_id for bad in summary.failed] == [row.video_id]
    assert "file not found" in (tmp_path / "cache" / "bad_clips.tsv").read_text()


def test_prepare_then_read_the_cache_as_the_media_read(synthetic, tmp_path):
    cache = tmp_path / "cache"
    summary = prepare_llp(synthetic, cache, image_size=SIZE, progress=False)
    assert summary.done == 9 and not summary.failed
    assert prepare_llp(synthetic, cache, image_size=SIZE, progress=False).skipped_existing == 9  # resumable
    from_cache = LLPDataset(synthetic, "val", transform=SMALL, cache_dir=cache)[0]
    from_media = LLPDataset(synthetic, "val", transform=SMALL)[0]
    assert from_cache["video"].shape == from_media["video"].shape
    torch.testing.assert_close(from_cache["audio"], from_media["audio"], atol=2e-2, rtol=0)  # cached as float16
    assert torch.equal(from_cache["audio_labels"], from_media["audio_labels"])


def test_the_real_clip_reads_in_both_layouts(tmp_path):
    """BjCEufrlXm4 (the reference repository's sample clip, train row ``BjCEufrlXm4_20_30  Speech,Dog``) as an
    mp4 and as 8 fps frames with a wav."""
    needs_llp()
    root = tmp_path / "llp"
    (root / "LLP_dataset" / "video").mkdir(parents=True)
    shutil.copy(LLP / "BjCEufrlXm4.mp4", root / "LLP_dataset" / "video" / "BjCEufrlXm4.mp4")
    lines = (LLP / WEAK_FILES["train"]).read_text().splitlines()
    (root / WEAK_FILES["train"]).write_text("\n".join([lines[0], *[x for x in lines if x.startswith("BjCE")]]) + "\n")
    item = LLPDataset(root, "train", transform=SMALL)[0]
    assert item["video"].shape == (10, 3, SIZE, SIZE)
    assert item["labels"].nonzero().flatten().tolist() == [LLP_CLASSES.index("Speech"), LLP_CLASSES.index("Dog")]

    clip = read_clip(root / "LLP_dataset" / "video" / "BjCEufrlXm4.mp4", 80, 1 / 8)  # 8 fps, as extracted
    frames = root / "LLP_dataset" / "frame" / "BjCEufrlXm4"
    frames.mkdir(parents=True)
    for index, frame in enumerate(clip.frames, start=1):
        Image.fromarray(frame).save(frames / f"{index:06d}.jpg")
    (root / "LLP_dataset" / "audio").mkdir()
    write_wav(root / "LLP_dataset" / "audio" / "BjCEufrlXm4.wav", clip.wave, 16000)
    shutil.rmtree(root / "LLP_dataset" / "video")
    from_frames = LLPDataset(root, "train", transform=SMALL)
    assert from_frames.source == "frames"
    assert from_frames[0]["video"].shape == (10, 3, SIZE, SIZE)
    assert np.isfinite(from_frames[0]["audio"].numpy()).all()
