"""AVE annotations (the real files and their quirks), malformed input, layouts and the dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avadapt.data.base import collate_av
from avadapt.data.media import read_frame_folder
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import AnnotationError, MissingMediaError
from avadapt.tasks.ave.dataset import AVE_HEADER, AVEAnnotations, AVEDataset, read_events
from avadapt.types import AVBatch
from tests.media_helpers import INDEX_STEP, SHARED_DATA, make_clip, tone, write_wav

AVE = SHARED_DATA / "ave"
SMALL = VideoTransform(VideoTransformConfig(input_size=(32, 32), crop_pct=1.0))


@pytest.fixture(scope="module")
def real() -> AVEAnnotations:
    if not AVE.is_dir():
        pytest.skip(f"shared AVE annotations not found at {AVE}")
    return AVEAnnotations.load(AVE)


def real_root(tmp_path: Path, annotations: str = "Annotations.txt") -> Path:
    """A root holding links to the real annotation files (never copies of them)."""
    root = tmp_path / "ave"
    root.mkdir()
    (root / "Annotations.txt").symlink_to(AVE / annotations)
    for name in ("trainSet.txt", "valSet.txt", "testSet.txt", "categories.txt"):
        (root / name).symlink_to(AVE / name)
    return root


# --- the real annotation files ---------------------------------------------------------------


def test_real_annotations_with_and_without_header(real):
    with_header = read_events(AVE / "Annotations.txt")
    without = read_events(AVE / "Annotations_noheader.txt")

    assert len(with_header) == len(without) == 4143
    assert [e.key for e in with_header] == [e.key for e in without]
    assert with_header[0].line == 2 and without[0].line == 1  # header skipped, line numbers kept
    assert (AVE / "Annotations.txt").read_text().splitlines()[0] == AVE_HEADER


def test_real_splits_partition_the_rows(real):
    sizes = {split: len(rows) for split, rows in real.splits.items()}
    assert sizes == {"train": 3339, "val": 402, "test": 402}
    every = real.splits["train"] + real.splits["val"] + real.splits["test"]
    assert sorted(every) == list(range(4143))  # a multiset partition: each row used exactly once


def test_real_splits_load_against_the_headerless_copy(tmp_path):
    if not AVE.is_dir():
        pytest.skip(f"shared AVE annotations not found at {AVE}")
    table = AVEAnnotations.load(real_root(tmp_path, "Annotations_noheader.txt"))
    assert {s: len(r) for s, r in table.splits.items()} == {"train": 3339, "val": 402, "test": 402}


def test_categories_in_first_appearance_order_match_categories_txt(real):
    listed = (AVE / "categories.txt").read_text().splitlines()
    assert real.categories == listed  # also checked by load() itself
    assert len(real.categories) == 28 and real.background == 28 and real.num_classes == 29
    assert real.categories[1] == "Male speech, man speaking"  # commas inside a field
    assert real.categories[19] == "Baby cry, infant cry"


def test_per_second_labels(real):
    row = next(e.row for e in real.events if e.video_id == "MH3m4AwEcRY")  # Church bell, 6..8
    assert real.labels(row).tolist() == [28] * 6 + [0, 0] + [28, 28]
    full = next(e.row for e in real.events if e.video_id == "RUhOCu3LNXM")  # Church bell, 0..10
    assert real.labels(full).tolist() == [0] * 10
    assert real.labels(row).dtype == torch.long


def test_zero_length_row_is_all_background(real):
    (event,) = [e for e in real.events if e.video_id == "VWi2ENBuTbw"]
    assert (event.category, event.start, event.end) == ("Church bell", 0, 0)
    assert real.labels(event.row).tolist() == [28] * 10


def test_repeated_ids_stay_separate_rows(real):
    counts = Counter(e.video_id for e in real.events)
    assert len(counts) == 4097 and sum(1 for c in counts.values() if c > 1) == 45
    rows = [e for e in real.events if e.video_id == "0f_iTO5t3hU"]
    assert [e.category for e in rows] == ["Ukulele", "Banjo", "Mandolin"]
    split_of = {r: s for s, rows_ in real.splits.items() for r in rows_}
    assert [split_of[e.row] for e in rows] == ["train", "train", "test"]


# --- malformed input -------------------------------------------------------------------------


def write_root(tmp_path: Path, annotations: list[str], splits: dict[str, list[str]] | None = None) -> Path:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "Annotations.txt").write_text("\n".join([AVE_HEADER, *annotations]) + "\n")
    for name, lines in (splits or {}).items():
        (root / name).write_text("".join(f"{line}\n" for line in lines))
    return root


ROWS = ["Church bell&aaaaaaaaaaa&good&0&10", "Baby cry, infant cry&bbbbbbbbbbb&good&2&5"]


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("Church bell&ccccccccccc&good&0", "expected 5 '&'-separated fields"),
        ("Church bell, ccccccccccc, good, 0, 10", "found 1"),
        ("Church bell&ccccccccccc&good&zero&10", "whole seconds"),
        ("Church bell&ccccccccccc&good&2.5&10", "whole seconds"),
        ("Church bell&ccccccccccc&good&0&11", "outside 0..10"),
        ("Church bell&ccccccccccc&good&-1&4", "outside 0..10"),
        ("Church bell&ccccccccccc&good&7&3", "start 7 is after end 3"),
        ("&ccccccccccc&good&0&10", "empty category"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad_line, problem):
    root = write_root(tmp_path, [*ROWS, bad_line])

    with pytest.raises(AnnotationError, match=problem) as info:
        AVEAnnotations.load(root)
    assert str(info.value).startswith(f"{root / 'Annotations.txt'}:4:")  # header is line 1
    assert info.value.line == 4


def test_unknown_category_in_split_file(tmp_path):
    root = write_root(tmp_path, ROWS, {"trainSet.txt": [ROWS[0], "Didgeridoo&bbbbbbbbbbb&good&2&5"]})

    with pytest.raises(AnnotationError, match="unknown category 'Didgeridoo'") as info:
        AVEAnnotations.load(root)
    assert str(info.value).startswith(f"{root / 'trainSet.txt'}:2:")


def test_split_row_missing_from_annotations_or_listed_twice(tmp_path):
    root = write_root(tmp_path, ROWS, {"trainSet.txt": ["Church bell&aaaaaaaaaaa&good&0&9"]})
    with pytest.raises(AnnotationError, match=r"trainSet.txt:1: row .* is not in Annotations.txt"):
        AVEAnnotations.load(root)

    root = write_root(tmp_path, ROWS, {"trainSet.txt": [ROWS[0]], "testSet.txt": [ROWS[0]]})
    with pytest.raises(AnnotationError, match=r"testSet.txt:1: .* more often in the split files"):
        AVEAnnotations.load(root)


def test_category_file_out_of_order(tmp_path):
    root = write_root(tmp_path, ROWS)
    (root / "categories.txt").write_text("Baby cry, infant cry\nChurch bell\n")
    with pytest.raises(AnnotationError, match="categories.txt: category order differs"):
        AVEAnnotations.load(root)


def test_header_only_on_first_line_and_windows_line_endings(tmp_path):
    root = tmp_path / "crlf"
    root.mkdir()
    (root / "Annotations.txt").write_bytes(
        ("\ufeff" + AVE_HEADER + "\r\n" + "\r\n".join(ROWS) + "\r\n").encode()
    )
    assert [e.video_id for e in read_events(root / "Annotations.txt")] == ["aaaaaaaaaaa", "bbbbbbbbbbb"]

    (root / "Annotations.txt").write_text("\n".join([ROWS[0], AVE_HEADER]) + "\n")
    with pytest.raises(AnnotationError, match=":2: start and end must be whole seconds"):
        read_events(root / "Annotations.txt")


# --- media layouts and the dataset ----------------------------------------------------------


def test_video_id_without_media_is_reported(tmp_path):
    root = write_root(tmp_path, ROWS, {"trainSet.txt": ROWS})
    make_clip(root / "AVE" / "aaaaaaaaaaa.mp4", fps=2)

    with pytest.raises(MissingMediaError, match="bbbbbbbbbbb: expected") as info:
        AVEDataset(root, "train", transform=SMALL)
    assert str(root / "AVE" / "bbbbbbbbbbb.mp4") in str(info.value)

    with pytest.warns(UserWarning, match="bbbbbbbbbbb"):
        dataset = AVEDataset(root, "train", transform=SMALL, on_missing="skip")
    assert len(dataset) == 1 and dataset[0]["meta"]["video_id"] == "aaaaaaaaaaa"


def test_no_media_folder_at_all(tmp_path):
    root = write_root(tmp_path, ROWS, {"trainSet.txt": ROWS})
    with pytest.raises(FileNotFoundError, match="no AVE media found"):
        AVEDataset(root, "train")


def test_generated_media_for_real_rows_loads(tmp_path):
    if not AVE.is_dir():
        pytest.skip(f"shared AVE annotations not found at {AVE}")
    root = real_root(tmp_path)
    ids = ["-TCDqe327us", "0f_iTO5t3hU", "0qvQIuQoODo", "VWi2ENBuTbw"]
    for video_id in ids:
        make_clip(root / "AVE" / f"{video_id}.mp4", fps=2)

    with pytest.warns(UserWarning, match="have no media"):
        train = AVEDataset(root, "train", transform=SMALL, on_missing="skip")

    by_row = {train[i]["meta"]["row"]: train[i] for i in range(len(train))}
    # -TCDqe327us twice (male and female speech, same mp4), 0f_iTO5t3hU twice in train, …
    assert sorted(by_row) == [26, 228, 283, 995, 1759, 2978]
    item = by_row[283]
    assert item["video"].shape == (10, 3, 32, 32) and item["audio"].shape == (10, 1, 128, 102)
    assert item["labels"].tolist() == [1] * 4 + [28] * 6  # Male speech 0..4
    assert by_row[995]["labels"].tolist() == [5] * 4 + [28] * 6  # Female speech, same video
    assert torch.equal(by_row[283]["video"], by_row[995]["video"])
    assert by_row[26]["labels"].tolist() == [28] * 10  # the zero-length row

    batch = collate_av([by_row[283], by_row[26]])
    assert isinstance(batch, AVBatch) and len(batch) == 2
    assert batch.video.shape == (2, 10, 3, 32, 32) and batch.audio.shape == (2, 10, 1, 128, 102)
    assert batch.targets["labels"].shape == (2, 10) and batch.targets["labels"].dtype == torch.long
    assert batch.meta["row"] == [283, 26] and batch.meta["video_id"] == ["-TCDqe327us", "VWi2ENBuTbw"]


def test_pre_extracted_frames_and_wav_layout(tmp_path):
    root = write_root(tmp_path, ROWS[:1], {"testSet.txt": ROWS[:1]})
    folder = root / "video_frames" / "aaaaaaaaaaa"
    folder.mkdir(parents=True)
    for i in range(30):  # 3 fps for 10 s, brightness 6·i
        Image.fromarray(np.full((24, 32, 3), INDEX_STEP * i, np.uint8)).save(folder / f"{i + 1:04d}.jpg")
    write_wav(root / "raw_audio" / "aaaaaaaaaaa.wav", tone(9.5, 16000), 16000)  # a little short

    frames = read_frame_folder(folder, 10)
    picked = [round(float(f.mean()) / INDEX_STEP) + 1 for f in frames]
    assert picked == np.linspace(1, 30, 10, dtype=int).tolist()  # the reference's frame choice

    dataset = AVEDataset(root, "test", transform=SMALL)
    assert dataset.source == "frames"
    item = dataset[0]
    assert item["video"].shape == (10, 3, 32, 32) and item["audio"].shape == (10, 1, 128, 102)
    assert torch.isfinite(item["audio"]).all()


def test_empty_frame_folder_is_a_media_error(tmp_path):
    from avadapt.data.media import MediaError

    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="empty: no extracted frames"):
        read_frame_folder(tmp_path / "empty", 10)


def test_collate_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        collate_av([])


def test_category_file_may_list_classes_no_row_uses(tmp_path):
    root = write_root(tmp_path, ROWS)
    (root / "categories.txt").write_text("Church bell\nBaby cry, infant cry\nBark\n")
    table = AVEAnnotations.load(root)
    assert table.categories == ["Church bell", "Baby cry, infant cry", "Bark"] and table.background == 3
    (root / "categories.txt").write_text("Church bell\n")
    with pytest.raises(AnnotationError, match="categories.txt: .*does not list.*Baby cry"):
        AVEAnnotations.load(root)
