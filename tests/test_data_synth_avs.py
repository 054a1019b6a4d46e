"""The synthetic AVSBench: native S4 / MS3 layouts, determinism, and masks that only the sound can pick.

Objects are found in the frames independently of the generator: every object is a flat patch of one
exact colour (PNG is lossless), the background is pixel noise, so a colour that covers 100 or more
pixels of a frame is an object.
"""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avadapt.tasks.avs.synth import S4_CATEGORIES, synthesize_avs

CLIPS = 12
SIZE = 64
SECONDS = 5
SAMPLE_RATE = 16000


def pitch_hz(k: int) -> float:
    """The root of category k's chord, as the synthetic datasets define it (4 octaves from 250 Hz)."""
    return 250.0 * 2 ** (4 * ((5 * k) % 28) / 28)


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    root = tmp_path_factory.mktemp("s4")
    return root, synthesize_avs(root, clips=CLIPS, seed=3, setting="s4")


@pytest.fixture(scope="module")
def ms3(tmp_path_factory):
    root = tmp_path_factory.mktemp("ms3")
    return root, synthesize_avs(root, clips=CLIPS, seed=3, setting="ms3")


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def rgb(path: Path) -> np.ndarray:
    image = Image.open(path)
    assert image.mode == "RGB" and image.size == (SIZE, SIZE), path
    return np.asarray(image)


def binary_mask(path: Path) -> np.ndarray:
    values = np.asarray(Image.open(path).convert("L"))
    assert set(np.unique(values)) == {0, 255}, path  # binary, both values present
    return values > 0


def objects(frame: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    """Each colour covering ≥ 100 pixels of an (H, W, 3) frame → its (H, W) bool region."""
    colours, counts = np.unique(frame.reshape(-1, 3), axis=0, return_counts=True)
    big = colours[counts >= 100]
    return {tuple(int(v) for v in c): np.all(frame == c, axis=-1) for c in big}


def sounding_colours(frame: np.ndarray, mask: np.ndarray) -> set[tuple[int, ...]]:
    """The objects the mask covers; asserts it covers whole objects and nothing else."""
    found = objects(frame)
    assert len(found) >= 2
    inside = {c for c, region in found.items() if (region & mask).any()}
    union = np.zeros_like(mask)
    for c in inside:
        union |= found[c]
    assert np.array_equal(union, mask)
    assert len(inside) < len(found)  # at least one visible object is silent
    return inside


def band_share(samples: np.ndarray, freq: float) -> float:
    """Share of the signal's energy within ±5 Hz of ``freq``."""
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)
    return float(spectrum[np.abs(freqs - freq) <= 5].sum() / spectrum.sum())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, SAMPLE_RATE)
        assert f.getnframes() == SECONDS * SAMPLE_RATE
        return np.frombuffer(f.readframes(f.getnframes()), dtype="<i2") / 32768.0


def test_s4_native_layout(s4):
    root, summary = s4
    header, rows = read_rows(root / "s4_meta_data.csv")
    assert header == ["name", "start", "category", "split"]
    assert len(rows) == CLIPS == summary.rows and len({r["name"] for r in rows}) == CLIPS
    assert summary.categories == list(S4_CATEGORIES[:4]) == ["baby_laughter", "female_singing",
                                                              "male_speech", "dog_barking"]  # fmt: skip
    expected = {"s4_meta_data.csv"}
    for row in rows:
        name, category, split = row["name"], row["category"], row["split"]
        assert len(name) == 11 and row["start"] == "0" and category in summary.categories
        folder = f"{split}/{category}/{name}"
        expected |= {f"s4_data/visual_frames/{folder}/{name}_{t}.png" for t in range(1, 6)}
        annotated = [1] if split == "train" else range(1, 6)  # the real S4 annotates train frame 1 only
        expected |= {f"s4_data/gt_masks/{folder}/{name}_{t}.png" for t in annotated}
        expected.add(f"s4_data/audio_wav/{split}/{category}/{name}.wav")
    assert files_under(root) == expected
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert counts == summary.splits and min(counts.values()) >= 1
    assert {r["category"] for r in rows} == set(summary.categories)
    assert "s4" in str(summary) and f"{CLIPS} clips" in str(summary)


def test_ms3_native_layout(ms3):
    root, summary = ms3
    header, rows = read_rows(root / "ms3_meta_data.csv")
    assert header == ["name", "split"]
    assert len(rows) == CLIPS == summary.rows and len({r["name"] for r in rows}) == CLIPS
    expected = {"ms3_meta_data.csv"}
    for row in rows:
        name, split = row["name"], row["split"]
        assert len(name) == 13 and name[11] == "_" and name[12].isdigit()  # like `_19NVGk6Zt8_0`
        expected |= {f"ms3_data/visual_frames/{name}/{name}.mp4_{t}.png" for t in range(1, 6)}
        expected |= {f"ms3_data/gt_masks/{split}/{name}/{name}_{t}.png" for t in range(1, 6)}
        expected.add(f"ms3_data/audio_wav/{split}/{name}.wav")
    assert files_under(root) == expected
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert counts == summary.splits and min(counts.values()) >= 1


def test_s4_mask_is_the_sounding_object_only(s4):
    """Each annotated frame shows ≥ 2 objects and the mask is exactly one of them; each category keeps
    one colour, and every category is silent (visible, unmasked) in some clip."""
    root, summary = s4
    _, rows = read_rows(root / "s4_meta_data.csv")
    colour_of: dict[str, tuple[int, ...]] = {}
    silent: set[tuple[int, ...]] = set()
    for row in rows:
        name, category, split = row["name"], row["category"], row["split"]
        folder = root / "s4_data"
        for t in [1] if split == "train" else range(1, 6):
            frame = rgb(folder / "visual_frames" / split / category / name / f"{name}_{t}.png")
            mask = binary_mask(folder / "gt_masks" / split / category / name / f"{name}_{t}.png")
            (colour,) = sounding_colours(frame, mask)
            assert colour_of.setdefault(category, colour) == colour, category
            assert 0.05 < mask.mean() < 0.25
            silent |= set(objects(frame)) - {colour}
    assert len(set(colour_of.values())) == len(summary.categories)  # one colour per category
    assert silent == set(colour_of.values())  # every category is also seen silent


def test_ms3_masks_hold_one_or_two_of_the_visible_objects(ms3):
    root, _ = ms3
    _, rows = read_rows(root / "ms3_meta_data.csv")
    sizes, changing, masked, silent = set(), 0, set(), set()
    for row in rows:
        name, split = row["name"], row["split"]
        per_second = []
        for t in range(1, 6):
            frame = rgb(root / "ms3_data" / "visual_frames" / name / f"{name}.mp4_{t}.png")
            mask = binary_mask(root / "ms3_data" / "gt_masks" / split / name / f"{name}_{t}.png")
            sounding = sounding_colours(frame, mask)
            assert len(objects(frame)) >= 3
            per_second.append(sounding)
            masked |= sounding
            silent |= set(objects(frame)) - sounding
        sizes |= {len(s) for s in per_second}
        changing += len({frozenset(s) for s in per_second}) > 1
    assert sizes == {1, 2} and changing >= 1
    assert masked == silent  # every kind of object both sounds and stays silent somewhere


def test_wav_plays_the_sounding_category(s4):
    """S4: 16 kHz mono, 5 s; the strongest frequency is the sounding category's chord root, and the
    roots of the visible but silent categories are absent."""
    root, summary = s4
    _, rows = read_rows(root / "s4_meta_data.csv")
    for row in rows:
        k = summary.categories.index(row["category"])
        wav = root / "s4_data" / "audio_wav" / row["split"] / row["category"] / f"{row['name']}.wav"
        samples = read_wav(wav)
        spectrum = np.abs(np.fft.rfft(samples))
        dominant = np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[spectrum.argmax()]
        assert abs(dominant - pitch_hz(k)) < 1.0, (row, dominant)
        for other in range(len(summary.categories)):
            if other != k:
                assert band_share(samples, pitch_hz(other)) < 0.01, (row, other)


def test_ms3_audio_follows_the_mask_second_by_second(s4, ms3):
    """Each second's sound holds the roots of exactly the masked objects (colour → category read off S4)."""
    s4_root, summary = s4
    _, s4_rows = read_rows(s4_root / "s4_meta_data.csv")
    pitch_of_colour = {}
    for row in s4_rows:
        name, category, split = row["name"], row["category"], row["split"]
        folder = Path(split) / category / name
        frame = rgb(s4_root / "s4_data" / "visual_frames" / folder / f"{name}_1.png")
        mask = binary_mask(s4_root / "s4_data" / "gt_masks" / folder / f"{name}_1.png")
        (colour,) = sounding_colours(frame, mask)
        pitch_of_colour[colour] = pitch_hz(summary.categories.index(category))
    root, _ = ms3
    _, rows = read_rows(root / "ms3_meta_data.csv")
    for row in rows[:6]:
        name, split = row["name"], row["split"]
        samples = read_wav(root / "ms3_data" / "audio_wav" / split / f"{name}.wav")
        for t in range(1, 6):
            frame = rgb(root / "ms3_data" / "visual_frames" / name / f"{name}.mp4_{t}.png")
            mask = binary_mask(root / "ms3_data" / "gt_masks" / split / name / f"{name}_{t}.png")
            sounding = sounding_colours(frame, mask)
            second = samples[(t - 1) * SAMPLE_RATE : t * SAMPLE_RATE]
            for colour in objects(frame):
                share = band_share(second, pitch_of_colour[colour])
                assert share > 0.05 if colour in sounding else share < 0.01, (name, t, colour, share)


def test_same_seed_same_bytes_other_seed_other_files(s4, tmp_path):
    root, _ = s4
    again = synthesize_avs(tmp_path / "again", clips=CLIPS, seed=3, setting="s4").root
    other = synthesize_avs(tmp_path / "other", clips=CLIPS, seed=4, setting="s4").root
    files = files_under(root)
    assert files_under(again) == files
    assert all((root / f).read_bytes() == (again / f).read_bytes() for f in sorted(files))
    assert (root / "s4_meta_data.csv").read_bytes() != (other / "s4_meta_data.csv").read_bytes()
    assert files_under(other) != files


def test_ms3_is_deterministic_too(ms3, tmp_path):
    root, _ = ms3
    again = synthesize_avs(tmp_path / "again", clips=CLIPS, seed=3, setting="ms3").root
    files = files_under(root)
    assert files_under(again) == files
    assert all((root / f).read_bytes() == (again / f).read_bytes() for f in sorted(files))


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="setting"):
        synthesize_avs(tmp_path, clips=2, setting="avss")
    with pytest.raises(ValueError, match="num_classes"):
        synthesize_avs(tmp_path, clips=2, num_classes=24)
    with pytest.raises(ValueError, match="num_classes"):
        synthesize_avs(tmp_path, clips=2, setting="ms3", num_classes=2)
