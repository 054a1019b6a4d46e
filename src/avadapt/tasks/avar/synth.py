"""A small synthetic Kinetics-Sounds: real mp4 files of several lengths and the lists in the native layout (both id
styles, a class-name file), so that tests, the demo and smoke training run the code real clips go through.

Every class is an action that is both seen and heard: a picture (a coloured shape on a circular path) together
with a sound (a chord, amplitude-modulated at its own rate) during a run of whole seconds covering at least half
of the clip. Most classes are *pairs* on a grid of pictures × sounds: each picture belongs to several classes and
so does each sound, so only the two together name the action. The others are *solo* actions, with a picture and a
sound of their own, where either alone suffices. The other seconds hold noise and often a distractor in one
modality only (a picture or a sound of any class), so a model must also find where the two streams agree.
The same ``seed`` gives the same files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
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
    split_counts,
    youtube_id,
)
from avadapt.tasks.avar.dataset import CLASS_FILE, KINETICS_SOUNDS_LISTS

NONE = -1  # "nothing" in the per-second truth
FPS = 8
SAMPLE_RATE = 16000
DISTRACTOR_RATE = 0.4  # chance that a second outside the action shows or plays something of another class
# Grey level of a clip's background, drawn per colour channel: a wide range (AVE's synthetic set draws 70–130)
# tints whole frames more than a 20-pixel shape colours them, and one label per clip leaves too few examples to
# learn to see past it (the demo's probe: 0.38 val top-1 with 70–130 and distractors at 0.6, 0.78 with these).
BACKGROUND_LEVEL = (95.0, 105.0)


@dataclass(kw_only=True)
class SynthAVARSummary(SynthSummary):
    """What :func:`synthesize_avar` wrote: clips of ``shortest``..``clip_seconds`` s, ``pairs`` of whose classes
    are picture-and-sound pairs."""

    shortest: int
    pairs: int

    def __str__(self) -> str:
        solo = len(self.categories) - self.pairs
        return (f"{self.generator}: {self.rows} clips of {self.shortest}-{self.clip_seconds} s "
                f"({split_counts(self.splits)}), {len(self.categories)} actions ({self.pairs} picture-and-sound pairs, "
                f"{solo} solo), in {self.seconds:.1f} s -> {self.root}")


def class_grid(num_classes: int) -> tuple[int, int, int]:
    """(pictures, sounds, solo) of ``num_classes`` classes: the largest grid of pictures × sounds (2 ≤ sounds ≤
    pictures ≤ sounds + 1) that leaves at least a quarter of the classes, and one at least, to solo actions."""
    best = None
    for sounds in range(2, num_classes):
        for pictures in (sounds, sounds + 1):
            if pictures * sounds <= num_classes - max(1, num_classes // 4):
                best = (pictures, sounds)
    if best is None:
        raise ValueError(f"the synthetic actions need at least 5 classes (a 2 × 2 grid and one solo), got "
                         f"{num_classes}")
    pictures, sounds = best
    return pictures, sounds, num_classes - pictures * sounds


def _render(rng: np.random.Generator, shown: list[int], looks: list[ClassLook], size: int) -> np.ndarray:
    """(seconds·FPS, size, size, 3) uint8: smooth moving noise, plus picture k's shape where ``shown`` says."""
    n = len(shown) * FPS
    background = rng.uniform(*BACKGROUND_LEVEL, size=3).astype(np.float32)
    frames = np.clip(blocky_noise(rng, n, size, std=18.0) + background, 0, 255)
    phase = float(rng.random())
    for i in range(n):
        k = shown[i // FPS]
        if k == NONE:
            continue
        look = looks[k]
        middle = (size - look.mask.shape[0]) / 2
        angle = 2 * np.pi * (look.orbit_hz * i / FPS + phase)
        look.paint(frames[i], round(middle + (middle - 2) * np.sin(angle)), round(middle + (middle - 2) * np.cos(angle)))
    return frames.astype(np.uint8)


def synthesize_avar(out: str | Path, clips: int = 120, seed: int = 0, num_classes: int = 16, *, size: int = 64,
                    seconds: tuple[int, int] = (6, 10), test_fraction: float = 0.25) -> SynthSummary:
    """Write ``clips`` synthetic clips under ``out``: ``<clip>.mp4`` each, the lists ``my_train.txt`` (clips named
    ``{id}_{start:06d}_{end:06d}``) and ``my_test.txt`` (``{id}_{start}``) as ``clip,seconds,label`` rows,
    ``classes.txt`` and ``synth_truth.json`` (per clip: its class, kind, and the picture seen and the sound heard
    in every second, −1 = none). ``num_classes`` splits into pair and solo actions by :func:`class_grid`; classes
    are assigned round-robin, clip lengths drawn from ``seconds`` (whole seconds, both ends included);
    ``test_fraction`` of each class (one at least from three clips up) is listed for test."""
    check_clips_and_size(clips, size, multiple=16)
    shortest, longest = seconds
    if not 2 <= shortest <= longest:
        raise ValueError(f"clip lengths must be whole seconds with 2 ≤ shortest ≤ longest, got {seconds}")
    pictures, sounds, solo = class_grid(num_classes)
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # class → (picture, sound): the grid first, then the solo actions with pictures and sounds of their own
    actions = [(p, s) for p in range(pictures) for s in range(sounds)]
    actions += [(pictures + k, sounds + k) for k in range(solo)]
    names = [f"picture {p} + sound {s}" for p, s in actions]
    picture_looks = [ClassLook.of(k, object_size=size * 5 // 16) for k in range(pictures + solo)]
    sound_looks = [ClassLook.of(k, object_size=4) for k in range(sounds + solo)]

    ids = distinct_ids(clips, lambda: youtube_id(rng))
    labels = [i % num_classes for i in range(clips)]
    tested: set[int] = set()  # clips listed for test: a shuffled share of each class
    for label in range(num_classes):
        members = [i for i in range(clips) if labels[i] == label]
        tests = round(test_fraction * len(members))
        if len(members) >= 3:
            tests = max(tests, 1)
        tested.update(members[j] for j in rng.permutation(len(members))[:tests])

    lists: dict[str, list[str]] = {"train": [], "test": []}
    truth = {}
    for i, (video_id, label) in enumerate(zip(ids, labels)):
        picture, sound = actions[label]
        length = int(rng.integers(shortest, longest + 1))
        span = int(rng.integers((length + 1) // 2, length + 1))
        begin = int(rng.integers(0, length - span + 1))
        shown, heard = [NONE] * length, [NONE] * length
        for t in range(length):
            if begin <= t < begin + span:
                shown[t], heard[t] = picture, sound
            elif rng.random() < DISTRACTOR_RATE:
                if rng.random() < 0.5:
                    shown[t] = int(rng.integers(len(picture_looks)))
                else:
                    heard[t] = int(rng.integers(len(sound_looks)))
        start = int(rng.integers(0, 300))
        split = "test" if i in tested else "train"
        clip = f"{video_id}_{start}" if split == "test" else f"{video_id}_{start:06d}_{start + length:06d}"
        frames = _render(rng, shown, picture_looks, size)
        wave = sounds_by_second(rng, [[sound_looks[k]] if k != NONE else [] for k in heard], SAMPLE_RATE)
        write_mp4(out / f"{clip}.mp4", frames, FPS, wave, SAMPLE_RATE)
        lists[split].append(f"{clip},{length},{label}")
        truth[clip] = {"label": label, "kind": "pair" if label < pictures * sounds else "solo",
                       "picture": shown, "sound": heard}
    for split, name in KINETICS_SOUNDS_LISTS.items():
        (out / name).write_text("".join(f"{row}\n" for row in sorted(lists[split])))
    (out / CLASS_FILE).write_text("".join(f"{name}\n" for name in names))
    (out / "synth_truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return SynthAVARSummary(generator="synthesize_avar", root=out, rows=clips,
                            splits={split: len(rows) for split, rows in lists.items()}, categories=names,
                            clip_seconds=longest, shortest=shortest, pairs=pictures * sounds,
                            seconds=time.perf_counter() - started)
