"""AVSBench S4 / MS3: the real split metadata, tiny native layouts, masks under the frame geometry, the flip,
bad input, and prepare → cache → dataset."""

from __future__ import annotations

import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from avadapt._registry import DATASETS
from avadapt.audio_front_ends import audio_front_end
from avadapt.data.base import collate_av
from avadapt.data.cache import BAD_CLIPS, CACHE_JSON, CacheConfigError, CacheSettings
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import AnnotationError, MediaError, MissingMediaError
from avadapt.tasks.avs.dataset import AVSDataset, MS3Dataset, S4Dataset
from avadapt.tasks.avs.metadata import (
    AVSS_TO_S4,
    S4_CATEGORIES,
    S4_TO_AVSS,
    read_avs_metadata,
    read_ms3_metadata,
    read_s4_metadata,
    splits_from_avss_metadata,
)
from avadapt.tasks.avs.prepare import prepare_avs
from tests.media_helpers import SHARED_DATA, tone, write_wav

AVSBENCH = SHARED_DATA / "avsbench"
AVSS = AVSBENCH / "avss_metadata.csv"
HEIGHT, WIDTH = 64, 96  # native frame size of the tiny layouts
SIZE = 32  # transform / cache size: resize by 1/2 to 32×48, then centre-crop columns 8..40
SMALL = VideoTransform(VideoTransformConfig(input_size=(SIZE, SIZE), crop_pct=1.0))
RATE = 16000
S4_CLIPS = (("aaaaaaaaaaa", "dog_barking", "train"), ("bbbbbbbbbbb", "helicopter", "test"))
MS3_CLIP = "ccccccccccc_0"


def needs_shared():
    if not AVSS.is_file():
        pytest.skip(f"shared AVSBench metadata not found at {AVSS}")


# --- tiny native layouts --------------------------------------------------------------------------


def square(k: int, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """(H, W) bool: frame k's object, rows 16..32 and columns 32 + 4k .. 48 + 4k (moving right)."""
    mask = np.zeros(shape, bool)
    mask[16:32, 32 + 4 * k : 48 + 4 * k] = True
    return mask


def scaled_square(k: int) -> np.ndarray:
    """Where :func:`square` lands after SMALL's geometry, by hand: halve every coordinate (64×96 →
    32×48), then drop the 8 columns the centre crop cuts off the left: rows 8..16, columns 8 + 2k ..
    16 + 2k."""
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[8:16, 8 + 2 * k : 16 + 2 * k] = 1
    return mask


def frame_pixels(seed: int, k: int) -> np.ndarray:
    """(H, W, 3) uint8: asymmetric noise (so a flip shows) with frame k's object painted white."""
    pixels = np.random.default_rng([seed, k]).integers(0, 160, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[square(k)] = 255
    return pixels


def save_mask(path: Path, mask: np.ndarray, encoding: str) -> None:
    """A binary mask as AVSBench stores them: mode '1' (S4), palette 'P' (MS3), or 0/255 / 0/1 greyscale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "1":
        image = Image.fromarray(mask)
    elif encoding == "P":
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette([0, 0, 0, 255, 255, 255])
    elif encoding == "255":
        image = Image.fromarray(mask.astype(np.uint8) * 255)
    else:
        image = Image.fromarray(mask.astype(np.uint8))
    image.save(path)


def clip_wave(seed: int) -> np.ndarray:
    return tone(5.0, RATE, freq=300.0 + 100 * seed)


def make_s4(root: Path, clips=S4_CLIPS, encoding: str = "1") -> Path:
    """``s4_meta_data.csv`` + frames, masks (train: frame 1 only) and wavs of ``clips`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["name,start,category,split"] + [f"{n},0,{c},{s}" for n, c, s in clips]
    (root / "s4_meta_data.csv").write_text("\n".join(lines) + "\n")
    for seed, (name, category, split) in enumerate(clips):
        frames = root / "s4_data" / "visual_frames" / split / category / name
        frames.mkdir(parents=True)
        for k in range(1, 6):
            Image.fromarray(frame_pixels(seed, k)).save(frames / f"{name}_{k}.png")
            if k == 1 or split != "train":
                save_mask(root / "s4_data" / "gt_masks" / split / category / name / f"{name}_{k}.png",
                          square(k), encoding)
        write_wav(root / "s4_data" / "audio_wav" / split / category / f"{name}.wav", clip_wave(seed), RATE)
    return root


def make_ms3(root: Path, name: str = MS3_CLIP, split: str = "train") -> Path:
    """``ms3_meta_data.csv`` + one clip: frames ``{name}.mp4_{k}.png`` (no split folder), 5 palette masks."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ms3_meta_data.csv").write_text(f"name,split\n{name},{split}\n")
    for k in range(1, 6):
        frame = root / "ms3_data" / "visual_frames" / name / f"{name}.mp4_{k}.png"
        frame.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame_pixels(7, k)).save(frame)
        save_mask(root / "ms3_data" / "gt_masks" / split / name / f"{name}_{k}.png", square(k), "P")
    write_wav(root / "ms3_data" / "audio_wav" / split / f"{name}.wav", clip_wave(7), RATE)
    return root


@pytest.fixture(scope="module")
def s4_root(tmp_path_factory) -> Path:
    return make_s4(tmp_path_factory.mktemp("s4"))


@pytest.fixture(scope="module")
def ms3_root(tmp_path_factory) -> Path:
    return make_ms3(tmp_path_factory.mktemp("ms3"))


def s4_frame_path(root: Path, clip: int, k: int) -> Path:
    name, category, split = S4_CLIPS[clip]
    return root / "s4_data" / "visual_frames" / split / category / name / f"{name}_{k}.png"


def s4_mask_path(root: Path, clip: int, k: int) -> Path:
    name, category, split = S4_CLIPS[clip]
    return root / "s4_data" / "gt_masks" / split / category / name / f"{name}_{k}.png"


# --- the real metadata ----------------------------------------------------------------------------


def test_real_avss_metadata_rebuilds_s4_and_ms3_splits():
    needs_shared()
    s4 = splits_from_avss_metadata(AVSS, "v1s")
    ms3 = splits_from_avss_metadata(AVSS, "v1m")

    assert Counter(c.split for c in s4) == {"train": 3452, "val": 740, "test": 740}
    assert Counter(c.split for c in ms3) == {"train": 296, "val": 64, "test": 64}
    assert {c.category for c in s4} == set(S4_CATEGORIES) and len(S4_CATEGORIES) == 23
    assert {c.category for c in ms3} == {""}
    first = s4[0]  # line 2: __GOGlHL23s,__GOGlHL23s_4000_9000,0,4,bird,val,v1s
    assert (first.name, first.split, first.category, first.start, first.line) == (
        "__GOGlHL23s", "val", "mynah_bird_singing", 4.0, 2)
    (quirk,) = [c for c in s4 if c.name == "zVfLHhs9uv8"]  # a_obj "h orse" in the real file
    assert (quirk.category, quirk.split) == ("horse_clip-clop", "train")


def test_real_s4_test_split_equals_acl_ssl_list_with_original_categories():
    needs_shared()
    listed: dict[str, str] = {}
    for line in (AVSBENCH / "avs1_s4_test.csv").read_text().splitlines():  # {name}_{frame},{S4 category}
        frame, category = line.strip().split(",")
        name, number = frame.rsplit("_", 1)
        assert number in {"1", "2", "3", "4", "5"}
        assert listed.setdefault(name, category) == category
    rebuilt = {c.name: c.category for c in splits_from_avss_metadata(AVSS, "v1s") if c.split == "test"}

    assert len(listed) == 740 and rebuilt == listed


def test_real_ms3_test_split_equals_acl_ssl_list():
    needs_shared()
    text = (AVSBENCH / "avs1_ms3_test.csv").read_text()
    names = {line.split(",")[0].rsplit("_", 1)[0] for line in text.splitlines() if line.strip()}
    rebuilt = {c.name for c in splits_from_avss_metadata(AVSS, "v1m") if c.split == "test"}
    assert len(names) == 64 and rebuilt == names


def test_category_map_round_trips():
    assert sorted(S4_TO_AVSS) == sorted(S4_CATEGORIES)
    assert len(set(S4_TO_AVSS.values())) == 23  # one renamed class per category
    assert all(AVSS_TO_S4[S4_TO_AVSS[c]] == c for c in S4_CATEGORIES)
    assert AVSS_TO_S4["h orse"] == "horse_clip-clop" and AVSS_TO_S4["emergency-car"] == "ambulance_siren"


def test_avss_metadata_can_stand_in_for_the_native_csv(s4_root, tmp_path):
    needs_shared()
    native = read_s4_metadata(s4_root / "s4_meta_data.csv")
    avss = tmp_path / "metadata.csv"
    avss.write_text("vid,uid,s_min,s_sec,a_obj,split,label\n"
                    "aaaaaaaaaaa,aaaaaaaaaaa_0_5000,0,0,dog,train,v1s\n"
                    "zzzzzzzzzzz_0,zzzzzzzzzzz_0,0,0,man_dog,train,v1m\n"
                    "bbbbbbbbbbb,bbbbbbbbbbb_0_5000,0,0,helicopter,test,v1s\n")
    rebuilt = read_avs_metadata(avss, "s4")
    assert [(c.name, c.category, c.split) for c in rebuilt] == [(c.name, c.category, c.split) for c in native]

    from_avss = S4Dataset(s4_root, "test", transform=SMALL, metadata=avss)  # absolute: used as is
    from_native = S4Dataset(s4_root, "test", transform=SMALL)
    assert torch.equal(from_avss[0]["masks"], from_native[0]["masks"])
    assert from_avss[0]["meta"] == from_native[0]["meta"]
    assert read_avs_metadata(S4Dataset(s4_root, "test", metadata="s4_meta_data.csv").metadata, "s4") == native


# --- items ----------------------------------------------------------------------------------------


def test_s4_items_shapes_and_annotated_frames(s4_root):
    train = S4Dataset(s4_root, "train", transform=SMALL)
    test = S4Dataset(s4_root, "test", transform=SMALL)
    assert len(train) == len(test) == 1 and train.source == "native"

    item = train[0]
    assert item["video"].shape == (5, 3, SIZE, SIZE) and item["video"].dtype == torch.float32
    assert item["audio"].shape == (5, 1, 128, 102) and item["audio"].dtype == torch.float32
    assert item["masks"].shape == (5, SIZE, SIZE) and item["masks"].dtype == torch.float32
    assert item["annotated"].tolist() == [True, False, False, False, False]  # S4 train: frame 1 only
    assert item["masks"][1:].abs().sum() == 0
    assert item["meta"] == {"video_id": "aaaaaaaaaaa", "category": "dog_barking", "split": "train"}

    item = test[0]
    assert item["annotated"].tolist() == [True] * 5
    assert set(item["masks"].unique().tolist()) == {0.0, 1.0}


def test_masks_and_frames_follow_the_same_geometry(s4_root):
    item = S4Dataset(s4_root, "test", transform=SMALL)[0]
    for t in range(5):
        expected = scaled_square(t + 1)
        assert torch.equal(item["masks"][t], torch.from_numpy(expected)), f"frame {t + 1}"
        # the white object in the frame sits under the mask (interior: bicubic blurs one pixel at the edges)
        rows, cols = np.nonzero(expected)
        inside = item["video"][t, :, rows.min() + 1 : rows.max(), cols.min() + 1 : cols.max()]
        assert inside.min() > 0.9  # white is 1.0 after (x/255 − 0.5)/0.5
    # the frames themselves: the transform applied to the png files
    pixels = np.stack([np.asarray(Image.open(s4_frame_path(s4_root, 1, k))) for k in range(1, 6)])
    assert torch.equal(item["video"], SMALL(pixels))


def test_audio_windows_are_segment_fbank_of_the_wav(s4_root):
    written = (np.clip(clip_wave(1), -1, 1) * 32767).astype(np.int16) / 32768.0  # what write_wav stored
    for fbank in (FbankConfig(), audio_front_end("stg_cma_swin_avs").fbank):
        item = S4Dataset(s4_root, "test", transform=SMALL, fbank=fbank)[0]
        assert item["audio"].shape == (5, 1, fbank.num_mel_bins, fbank.target_frames)
        torch.testing.assert_close(item["audio"], segment_fbank(written, fbank, 5, 1.0), atol=1e-4, rtol=0)


def test_flip_mirrors_frames_and_masks_together(s4_root):
    plain = S4Dataset(s4_root, "test", transform=SMALL)[0]
    augmented = S4Dataset(s4_root, "test", transform=SMALL, augment=True)
    flipped = set()
    for seed in range(12):
        item = augmented[(0, seed)]
        coin = float(torch.rand((), generator=torch.Generator().manual_seed(seed))) < 0.5
        video, masks = plain["video"], plain["masks"]
        if coin:
            video, masks = video.flip(-1), masks.flip(-1)
        assert torch.equal(item["video"], video) and torch.equal(item["masks"], masks), seed
        assert torch.equal(item["audio"], plain["audio"])
        assert torch.equal(item["annotated"], plain["annotated"])
        assert torch.equal(augmented[(0, seed)]["video"], item["video"])  # the seed alone decides
        flipped.add(coin)
    assert flipped == {True, False}
    unaugmented = S4Dataset(s4_root, "test", transform=SMALL)
    assert torch.equal(unaugmented[(0, 3)]["video"], plain["video"])  # a seed without augment: no flip


def test_ms3_layout(ms3_root):
    dataset = MS3Dataset(ms3_root, "train", transform=SMALL)
    item = dataset[0]
    assert item["annotated"].tolist() == [True] * 5  # MS3: every frame, even in train
    for t in range(5):
        assert torch.equal(item["masks"][t], torch.from_numpy(scaled_square(t + 1)))
    assert item["meta"] == {"video_id": MS3_CLIP, "category": "", "split": "train"}
    assert len(MS3Dataset(ms3_root, "test", transform=SMALL)) == 0


def test_official_zip_layout(tmp_path, s4_root):
    zip_root = tmp_path / "avsbench_data"
    make_s4(zip_root / "Single-source")
    make_ms3(zip_root / "Multi-sources")
    s4 = S4Dataset(zip_root, "test", transform=SMALL)[0]
    assert torch.equal(s4["video"], S4Dataset(s4_root, "test", transform=SMALL)[0]["video"])
    assert MS3Dataset(zip_root, "train", transform=SMALL)[0]["meta"]["video_id"] == MS3_CLIP


@pytest.mark.parametrize("encoding", ["255", "01", "P"])
def test_mask_encodings_binarise_alike(tmp_path, s4_root, encoding):
    root = make_s4(tmp_path / encoding, encoding=encoding)
    masks = S4Dataset(root, "test", transform=SMALL)[0]["masks"]
    assert torch.equal(masks, S4Dataset(s4_root, "test", transform=SMALL)[0]["masks"])


def test_registered_and_batched(s4_root):
    assert DATASETS.get("avs_s4") is S4Dataset and DATASETS.get("avs_ms3") is MS3Dataset
    assert S4Dataset.task == "avs" and S4Dataset.num_segments == 5 and S4Dataset.train_augmentation is None
    items = [S4Dataset(s4_root, split, transform=SMALL)[0] for split in ("train", "test")]
    batch = collate_av(items)
    assert batch.video.shape == (2, 5, 3, SIZE, SIZE) and batch.targets["masks"].shape == (2, 5, SIZE, SIZE)
    assert batch.targets["annotated"].tolist() == [[True] + [False] * 4, [True] * 5]
    assert batch.meta["split"] == ["train", "test"]
    with pytest.raises(TypeError, match="S4Dataset or MS3Dataset"):
        AVSDataset(s4_root, "test")


def test_synthesize_calls_the_avs_generator(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("avadapt.tasks.avs.synth")
    fake.synthesize_avs = lambda out, **kwargs: calls.append((out, kwargs)) or "summary"
    monkeypatch.setitem(sys.modules, "avadapt.tasks.avs.synth", fake)

    assert MS3Dataset.synthesize(tmp_path, clips=3, seed=5) == "summary"
    assert calls == [(tmp_path, {"clips": 3, "seed": 5, "setting": "ms3", "num_classes": None})]


# --- bad input ------------------------------------------------------------------------------------


def test_mask_of_another_size_than_its_frame(tmp_path):
    root = make_s4(tmp_path / "s4")
    save_mask(s4_mask_path(root, 1, 2), np.ones((32, 48), bool), "1")
    problem = r"_2.png: mask is 48×32 but its frame bbbbbbbbbbb_2.png is 96×64"
    with pytest.raises(MediaError, match=problem) as info:
        S4Dataset(root, "test", transform=SMALL)[0]
    assert info.value.path == s4_mask_path(root, 1, 2)


def test_missing_mask_of_an_annotated_frame(tmp_path):
    root = make_s4(tmp_path / "s4")
    s4_mask_path(root, 1, 3).unlink()
    with pytest.raises(MissingMediaError, match=r"bbbbbbbbbbb: expected .*bbbbbbbbbbb_3.png"):
        S4Dataset(root, "test", transform=SMALL)
    with pytest.warns(UserWarning, match=r"1 clip\(s\) of AVSBench S4 split 'test' have no media(.|\n)*_3.png"):
        assert len(S4Dataset(root, "test", transform=SMALL, on_missing="skip")) == 0
    assert len(S4Dataset(root, "train", transform=SMALL)) == 1  # S4 train needs no mask beyond frame 1


def test_clip_with_fewer_than_five_frames(tmp_path):
    root = make_s4(tmp_path / "s4")
    for k in (4, 5):
        s4_frame_path(root, 0, k).unlink()
    with pytest.raises(MissingMediaError, match=r"aaaaaaaaaaa: expected .*aaaaaaaaaaa_4.png, .*aaaaaaaaaaa_5.png$"):
        S4Dataset(root, "train", transform=SMALL)
    with pytest.warns(UserWarning, match="aaaaaaaaaaa: expected .*aaaaaaaaaaa_4.png"):
        assert len(S4Dataset(root, "train", transform=SMALL, on_missing="skip")) == 0


@pytest.mark.parametrize(
    "row, problem",
    [
        ("ccccccccccc,0,didgeridoo,train", "unknown S4 category 'didgeridoo'"),
        ("ccccccccccc,0,dog_barking", "missing field 'split' (column 4)"),
        ("ccccccccccc,0,,train", "missing field 'category' (column 3)"),
        ("ccccccccccc,0,dog_barking,holdout", "split 'holdout' is not one of train, val, test"),
        ("aaaaaaaaaaa,0,dog_barking,test", "clip 'aaaaaaaaaaa' is already listed on line 2"),
        ("ccccccccccc,zero,dog_barking,test", "start must be a number of seconds"),
        ("ccccccccccc,0,dog_barking,test,extra", "5 fields, but the header has 4"),
    ],
)
def test_bad_s4_csv_row_names_file_and_line(tmp_path, row, problem):
    root = make_s4(tmp_path / "s4")
    csv = root / "s4_meta_data.csv"
    csv.write_text(csv.read_text() + row + "\n")
    with pytest.raises(AnnotationError, match=re.escape(problem)) as info:
        S4Dataset(root, "train", transform=SMALL)
    assert str(info.value).startswith(f"{csv}:4:") and info.value.line == 4


def test_bad_ms3_and_avss_rows(tmp_path):
    ms3 = tmp_path / "ms3_meta_data.csv"
    ms3.write_text("name,split\nccccccccccc_0,train\nddddddddddd_1\n")
    with pytest.raises(AnnotationError, match=r"ms3_meta_data.csv:3: missing field 'split'"):
        read_ms3_metadata(ms3)
    ms3.write_text("name\nccccccccccc_0\n")
    with pytest.raises(AnnotationError, match=r"ms3_meta_data.csv:1: the header has no 'split' column"):
        read_ms3_metadata(ms3)

    avss = tmp_path / "metadata.csv"
    avss.write_text("vid,uid,s_min,s_sec,a_obj,split,label\n"
                    "aaaaaaaaaaa,aaaaaaaaaaa_0_5000,0,0,dog,train,v1s\n"
                    "bbbbbbbbbbb,bbbbbbbbbbb_0_5000,0,0,kazoo,train,v1s\n")
    with pytest.raises(AnnotationError, match=r"metadata.csv:3: a_obj 'kazoo' of a v1s row has no S4 cat"):
        splits_from_avss_metadata(avss, "v1s")
    assert splits_from_avss_metadata(avss, "v1m") == []  # v1s rows are not looked into for MS3
    with pytest.raises(AnnotationError, match="metadata file not found"):
        read_s4_metadata(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "empty file (0 bytes)"),
        (b"\x89PNG\r\n\x1a\nnot really a png", "cannot decode image"),
        ("ramp", "not a binary mask: 64 distinct pixel values"),
    ],
)
def test_unreadable_or_non_binary_mask(tmp_path, content, problem):
    root = make_s4(tmp_path / "s4")
    path = s4_mask_path(root, 1, 4)
    if content == "ramp":  # a grey ramp, as a soft or anti-aliased mask would have
        Image.fromarray(np.repeat(np.arange(64, dtype=np.uint8)[:, None] * 4, WIDTH, axis=1)).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=re.escape(problem)) as info:
        S4Dataset(root, "test", transform=SMALL)[0]
    assert info.value.path == path and str(info.value).startswith(str(path))


def test_too_short_or_broken_wav(tmp_path):
    root = make_s4(tmp_path / "s4")
    wav = root / "s4_data" / "audio_wav" / "test" / "helicopter" / "bbbbbbbbbbb.wav"
    write_wav(wav, tone(2.0, RATE), RATE)
    with pytest.raises(MediaError, match=r"bbbbbbbbbbb.wav: too short: 2.00 s of audio, at least 4.50 s"):
        S4Dataset(root, "test", transform=SMALL)[0]
    write_wav(wav, tone(4.8, RATE), RATE)  # a little short: padded with silence
    assert S4Dataset(root, "test", transform=SMALL)[0]["audio"].shape == (5, 1, 128, 102)


# --- prepare → cache → dataset --------------------------------------------------------------------


BAD_S4 = (("vvvvvvvvvv1", "lawn_mowing", "val"), ("vvvvvvvvvv2", "race_car", "val"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """An S4 root with the two good clips plus a val clip with a grey-ramp mask and one without its wav,
    prepared into a cache."""
    root = make_s4(tmp_path_factory.mktemp("s4bad"), clips=S4_CLIPS + BAD_S4)
    ramp = root / "s4_data" / "gt_masks" / "val" / "lawn_mowing" / "vvvvvvvvvv1" / "vvvvvvvvvv1_2.png"
    Image.fromarray(np.tile(np.arange(WIDTH, dtype=np.uint8), (HEIGHT, 1))).save(ramp)
    wav = root / "s4_data" / "audio_wav" / "val" / "race_car" / "vvvvvvvvvv2.wav"
    wav.unlink()
    out = tmp_path_factory.mktemp("cache") / "s4"
    summary = prepare_avs(root, out, setting="s4", image_size=SIZE, progress=False)
    return root, out, summary, ramp, wav


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_reports_bad_clips(prepared):
    _root, out, summary, ramp, wav = prepared
    assert (summary.total, summary.done, summary.skipped_existing) == (4, 2, 0)
    assert str(summary).startswith("prepare_avs: 2 clips written, 0 already cached, 2 failed")
    report = (out / BAD_CLIPS).read_text().splitlines()
    assert report[0] == "video_id\tpath\treason"
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in report[1:]}
    assert rows["vvvvvvvvvv1"][0] == str(ramp) and rows["vvvvvvvvvv1"][1].startswith("not a binary mask")
    assert rows["vvvvvvvvvv2"] == [str(wav), "file not found"]
    assert not (out / "val").exists() or not list((out / "val").iterdir())


def test_cache_format(prepared):
    _, out, *_ = prepared
    settings = CacheSettings.read(out)
    assert settings.dataset == "avs_s4" and settings.num_segments == 5 and settings.image_size == SIZE
    assert json.loads((out / CACHE_JSON).read_text())["dataset"] == "avs_s4"
    tensors = load_file(str(out / "train" / "aaaaaaaaaaa.safetensors"))
    assert set(tensors) == {"frames", "fbank", "masks", "annotated"}
    assert tensors["frames"].dtype == torch.uint8 and tensors["frames"].shape == (5, 3, SIZE, SIZE)
    assert tensors["fbank"].dtype == torch.float16 and tensors["fbank"].shape == (5, 1, 128, 102)
    assert tensors["masks"].dtype == torch.uint8 and tensors["masks"].shape == (5, SIZE, SIZE)
    assert tensors["annotated"].dtype == torch.uint8 and tensors["annotated"].tolist() == [1, 0, 0, 0, 0]
    assert torch.equal(tensors["masks"][0].float(), torch.from_numpy(scaled_square(1)))


@pytest.mark.parametrize("split", ["train", "test"])
def test_cache_reads_like_the_native_layout(prepared, split):
    root, out, *_ = prepared
    pairs = []
    # seed 3 flips, seed 1 does not (torch.rand of each is 0.004 and 0.758): the same seed flips both alike
    for augment, key in ((False, 0), (True, (0, 1)), (True, (0, 3))):
        cached = S4Dataset(root, split, cache_dir=out, transform=SMALL, augment=augment)
        native = S4Dataset(root, split, transform=SMALL, augment=augment)
        assert cached.source == "cache" and native.source == "native"
        pairs.append((cached[key], native[key]))
    for a, b in pairs:
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["masks"], b["masks"])
        assert torch.equal(a["annotated"], b["annotated"]) and a["meta"] == b["meta"]
        # fbank stored as float16: within its rounding (relative 2^-11) of the float32 values
        assert ((a["audio"] - b["audio"]).abs() <= b["audio"].abs() * 2**-11 + 1e-5).all()


def test_cache_lacks_the_clips_that_failed(prepared):
    root, out, *_ = prepared
    expected = r"vvvvvvvvvv1: expected .*val/vvvvvvvvvv1.safetensors"
    with pytest.raises(MissingMediaError, match=expected) as info:
        S4Dataset(root, "val", cache_dir=out, transform=SMALL)
    assert BAD_CLIPS in str(info.value)


def test_second_prepare_writes_nothing_new(prepared):
    root, out, *_ = prepared
    before = {k: v for k, v in snapshot(out).items() if k != BAD_CLIPS}
    again = prepare_avs(root, out, setting="s4", image_size=SIZE, progress=False)
    assert (again.done, again.skipped_existing, len(again.failed)) == (0, 2, 2)  # the bad ones are retried
    assert {k: v for k, v in snapshot(out).items() if k != BAD_CLIPS} == before


def test_s4_cache_is_not_read_as_ms3(prepared, ms3_root):
    _, out, *_ = prepared
    with pytest.raises(CacheConfigError, match="dataset: cache 'avs_s4', wanted 'avs_ms3'"):
        MS3Dataset(ms3_root, "train", cache_dir=out, transform=SMALL)
    with pytest.raises(CacheConfigError, match="dataset: cache 'avs_s4', wanted 'avs_ms3'"):
        prepare_avs(ms3_root, out, setting="ms3", image_size=SIZE, progress=False)
    with pytest.raises(CacheConfigError, match="image_size: cache 32, wanted 224"):
        S4Dataset(prepared[0], "train", cache_dir=out)


@pytest.mark.parametrize("other", ["ave", "music_avqa"])
def test_a_cache_of_another_dataset_is_not_read_as_s4(prepared, tmp_path, other):
    root, out, *_ = prepared
    copy = tmp_path / "other"
    copy.mkdir()
    settings = CacheSettings.read(out).to_json()
    (copy / CACHE_JSON).write_text(json.dumps({**settings, "dataset": other}))
    wrong = rf"{copy / CACHE_JSON}: the cache was prepared with other settings — dataset: cache '{other}', wanted 'avs_s4'"
    with pytest.raises(CacheConfigError, match=wrong):
        S4Dataset(root, "train", cache_dir=copy, transform=SMALL)
    with pytest.raises(CacheConfigError, match=wrong):
        prepare_avs(root, copy, setting="s4", image_size=SIZE, progress=False)


@pytest.mark.slow  # spawns worker processes; the AVE prepare test covers them in the default suite
def test_ms3_prepare_in_worker_processes(ms3_root, tmp_path):
    summary = MS3Dataset.prepare(ms3_root, tmp_path / "ms3", workers=2, image_size=SIZE, fbank=None,
                                 media_root=None, crop_pct=1.0, progress=False)
    assert (summary.done, summary.failed) == (1, [])
    assert (tmp_path / "ms3" / "train" / f"{MS3_CLIP}.safetensors").is_file()
    cached = MS3Dataset(ms3_root, "train", cache_dir=tmp_path / "ms3", transform=SMALL)[0]
    native = MS3Dataset(ms3_root, "train", transform=SMALL)[0]
    assert torch.equal(cached["video"], native["video"]) and torch.equal(cached["masks"], native["masks"])
    assert cached["annotated"].tolist() == [True] * 5
