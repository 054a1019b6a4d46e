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
from collections import Counter
from pathlib import Path

import numpy as np

from avadapt.data.media import write_mp4
from avadapt.data.synthetic import (
    ClassLook,
    SynthSummary,
    assign_splits,
    blocky_noise,
    check_clips_and_size,
    distinct_ids,
    sounds_by_second,
    youtube_id,
)
from avadapt.tasks.ave.dataset import AVE_HEADER, AVE_SEGMENTS, SPLIT_FILES

# The 28 AVE categories in label order (Tian et al. 2018; = categories.txt of the official release).
AVE_CATEGORIES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle", "Flute",
    "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar", "Train horn",
    "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat", "Horse",
    "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
)  # fmt: skip

NONE = -1  # "nothing of any class" in the per-second truth
FPS = 8
SAMPLE_RATE = 16000
DISTRACTOR_RATE = 0.5  # chance that a background second shows or plays a one-modality distractor
SAME_CLASS_DISTRACTORS = 0.7  # chance that a distractor is of the event's class


def _render_video(
    rng: np.random.Generator, visual: list[int], looks: list[ClassLook], size: int, phase: float
) -> np.ndarray:
    """(seconds·FPS, size, size, 3) uint8: smooth moving noise, plus a class's shape where ``visual`` says."""
    n = len(visual) * FPS
    noise = blocky_noise(rng, n, size, std=18.0)
    frames = np.clip(noise + rng.uniform(70, 130, size=3).astype(np.float32), 0, 255)
    for i in range(n):
        k = visual[i // FPS]
        if k == NONE:
            continue
        look = looks[k]
        middle = (size - look.mask.shape[0]) / 2  # box corner of a centred shape
        angle = 2 * np.pi * (look.orbit_hz * i / FPS + phase)
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
    split_fractions: tuple[float, float] = (0.15, 0.15),
) -> SynthSummary:
    """Write ``clips`` synthetic 10 s clips under ``out``: ``AVE/<id>.mp4``, ``Annotations.txt`` (with the official
    header), the three split files, ``categories.txt`` (the first ``num_classes`` real AVE categories) and
    ``synth_truth.json``: per video id, the class seen and the class heard in every second (−1 = none). Classes
    are assigned round-robin, event lengths drawn from 1..10 s. ``split_fractions``: (val, test) share per
    class (≥ 1 row each from three rows up; a class of fewer rows stays in train).
    """
    if not 1 <= num_classes <= len(AVE_CATEGORIES):
        raise ValueError(f"num_classes must lie in 1..{len(AVE_CATEGORIES)}, got {num_classes}")
    check_clips_and_size(clips, size, multiple=16)
    started = time.perf_counter()
    out = Path(out)
    (out / "AVE").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = list(AVE_CATEGORIES[:num_classes])
    looks = [ClassLook.of(k, object_size=size * 5 // 16) for k in range(num_classes)]

    ids = distinct_ids(clips, lambda: youtube_id(rng))

    rows = []  # (category index, id, start, end)
    truth = {}
    for i, video_id in enumerate(ids):
        k = i % num_classes
        length = int(rng.integers(1, AVE_SEGMENTS + 1))
        start = int(rng.integers(0, AVE_SEGMENTS - length + 1))
        visual, audible = [NONE] * AVE_SEGMENTS, [NONE] * AVE_SEGMENTS
        for t in range(AVE_SEGMENTS):
            if start <= t < start + length:
                visual[t] = audible[t] = k
            elif rng.random() < DISTRACTOR_RATE:
                same_class = rng.random() < SAME_CLASS_DISTRACTORS or num_classes == 1
                other = k if same_class else int(rng.integers(num_classes))
                (visual if rng.random() < 0.5 else audible)[t] = other
        frames = _render_video(rng, visual, looks, size, phase=float(rng.random()))
        wave = sounds_by_second(rng, [[looks[k]] if k != NONE else [] for k in audible], SAMPLE_RATE)
        write_mp4(out / "AVE" / f"{video_id}.mp4", frames, FPS, wave, SAMPLE_RATE)
        rows.append((k, video_id, start, start + length))
        truth[video_id] = {"visual": visual, "audio": audible}

    rows.sort(key=lambda row: row[0])  # grouped by class, as in the real file: labels = first appearance
    lines = [f"{categories[k]}&{vid}&good&{s}&{e}" for k, vid, s, e in rows]
    split_of = []  # per class, as the rows are grouped
    for _, members in sorted(Counter(row[0] for row in rows).items()):
        shares = assign_splits(rng, members, split_fractions, at_least_one_from=3)
        split_of += shares if members >= 3 else ["train"] * members
    (out / "Annotations.txt").write_text("\n".join([AVE_HEADER, *lines]) + "\n")
    for split, name in SPLIT_FILES.items():
        (out / name).write_text("".join(f"{line}\n" for line, s in zip(lines, split_of) if s == split))
    counts = {split: split_of.count(split) for split in SPLIT_FILES}
    (out / "categories.txt").write_text("".join(f"{c}\n" for c in categories))
    (out / "synth_truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return SynthSummary(generator="synthesize_ave", root=out, rows=len(rows), splits=counts,
                        categories=categories, clip_seconds=AVE_SEGMENTS, seconds=time.perf_counter() - started)

