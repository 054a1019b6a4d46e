"""A small synthetic AVE: real mp4 files in the native layout (so tests, the demo and smoke training go through
the code real AVE goes through), learnable only with both modalities.

In each 10 s clip an event of one class fills a random run of seconds, which show the class's picture (a coloured
shape on a class-specific path) AND play its sound (a class-specific chord, amplitude-modulated at a
class-specific rate). Background seconds hold noise, and often a distractor in ONE modality only, usually of the
event's class, so a video-only or audio-only model cannot tell event seconds from distractor seconds. The same
``seed`` gives the same files.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from avadapt.data.media import write_mp4
from avadapt.data.synthetic import (
    ClassLook,
    SynthSummary,
    blocky_noise,
    check_clips_and_size,
    distinct_ids,
    sounds_by_second,
    youtube_id,
)
from avadapt.tasks.ave.dataset import AVE_HEADER, SPLIT_FILES

# The 28 AVE categories in label order (Tian et al. 2018; = categories.txt of the official release).
AVE_CATEGORIES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle", "Flute",
    "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar", "Train horn",
    "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat", "Horse",
    "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
)  # fmt: skip

NONE = -1  # "nothing of any class" in the per-second truth


def _render_video(
    rng: np.random.Generator, visual: list[int], looks: list[ClassLook], size: int, fps: int, phase: float
) -> np.ndarray:
    """(seconds·fps, size, size, 3) uint8: smooth moving noise, plus a class's shape where ``visual`` says."""
    n = len(visual) * fps
    noise = blocky_noise(rng, n, size, std=18.0)
    frames = np.clip(noise + rng.uniform(70, 130, size=3).astype(np.float32), 0, 255)
    for i in range(n):
        k = visual[i // fps]
        if k == NONE:
            continue
        look = looks[k]
        middle = (size - look.mask.shape[0]) / 2  # box corner of a centred shape
        angle = 2 * np.pi * (look.orbit_hz * i / fps + phase)
        radius = middle - 2
        look.paint(frames[i], round(middle + radius * np.sin(angle)), round(middle + radius * np.cos(angle)))
    return frames.astype(np.uint8)


def synthesize_ave(
    out: str | Path,
    clips: int = 100,
    seed: int = 0,
    num_classes: int = 4,
    *,
    size: int = 64,
    fps: int = 8,
    sample_rate: int = 16000,
    distractor_rate: float = 0.5,
    same_class_distractors: float = 0.7,
    split_fractions: tuple[float, float] = (0.15, 0.15),
) -> SynthSummary:
    """Write ``clips`` synthetic 10 s clips under ``out``: ``AVE/<id>.mp4``, ``Annotations.txt`` (with the official
    header), the three split files, ``categories.txt`` (the first ``num_classes`` real AVE categories) and
    ``synth_truth.json``: per video id, the class seen and the class heard in every second (−1 = none). Classes
    are assigned round-robin, event lengths drawn from 1..10 s. ``distractor_rate``: chance that a background
    second carries a one-modality distractor, ``same_class_distractors``: that it is of the event's class;
    ``split_fractions``: (val, test) share per class (≥ 1 row each from three rows up).
    """
    if not 1 <= num_classes <= len(AVE_CATEGORIES):
        raise ValueError(f"num_classes must lie in 1..{len(AVE_CATEGORIES)}, got {num_classes}")
    check_clips_and_size(clips, size, multiple=16)
    started = time.perf_counter()
    out = Path(out)
    (out / "AVE").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    seconds = 10
    categories = list(AVE_CATEGORIES[:num_classes])
    looks = [ClassLook.of(k, object_size=size * 5 // 16) for k in range(num_classes)]

    ids = distinct_ids(clips, lambda: youtube_id(rng))

    rows = []  # (category index, id, start, end)
    truth = {}
    for i, video_id in enumerate(ids):
        k = i % num_classes
        length = int(rng.integers(1, seconds + 1))
        start = int(rng.integers(0, seconds - length + 1))
        visual, audible = [NONE] * seconds, [NONE] * seconds
        for t in range(seconds):
            if start <= t < start + length:
                visual[t] = audible[t] = k
            elif rng.random() < distractor_rate:
                other = (
                    k
                    if rng.random() < same_class_distractors or num_classes == 1
                    else int(rng.integers(num_classes))
                )
                (visual if rng.random() < 0.5 else audible)[t] = other
        frames = _render_video(rng, visual, looks, size, fps, phase=float(rng.random()))
        wave = sounds_by_second(rng, [[looks[k]] if k != NONE else [] for k in audible], sample_rate)
        write_mp4(out / "AVE" / f"{video_id}.mp4", frames, fps, wave, sample_rate)
        rows.append((k, video_id, start, start + length))
        truth[video_id] = {"visual": visual, "audio": audible}

    rows.sort(key=lambda row: row[0])  # grouped by class, as in the real file: labels = first appearance
    lines = [f"{categories[k]}&{vid}&good&{s}&{e}" for k, vid, s, e in rows]
    split_of = _assign_splits(rng, [row[0] for row in rows], split_fractions)
    (out / "Annotations.txt").write_text("\n".join([AVE_HEADER, *lines]) + "\n")
    counts = {}
    for split, name in SPLIT_FILES.items():
        chosen = [line for line, s in zip(lines, split_of) if s == split]
        (out / name).write_text("".join(f"{line}\n" for line in chosen))
        counts[split] = len(chosen)
    (out / "categories.txt").write_text("".join(f"{c}\n" for c in categories))
    (out / "synth_truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return SynthSummary(generator="synthesize_ave", root=out, rows=len(rows), splits=counts,
                        categories=categories, clip_seconds=seconds, seconds=time.perf_counter() - started)


def _assign_splits(rng: np.random.Generator, classes: list[int], fractions: tuple[float, float]) -> list[str]:
    """Per class, a shuffled share of rows to val and test (≥ 1 each from 3 rows up), the rest to train."""
    split_of = ["train"] * len(classes)
    for k in sorted(set(classes)):
        members = [i for i, c in enumerate(classes) if c == k]
        rng.shuffle(members)
        n = len(members)
        n_val = max(1, round(fractions[0] * n)) if n >= 3 else 0
        n_test = max(1, round(fractions[1] * n)) if n >= 3 else 0
        for i in members[:n_val]:
            split_of[i] = "val"
        for i in members[n_val : n_val + n_test]:
            split_of[i] = "test"
    return split_of
