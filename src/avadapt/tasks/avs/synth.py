"""A small synthetic AVSBench-object (v1) in the native layout: per 5 s clip, five PNG frames (one per second),
the PNG masks of the sounding object(s) and a 16 kHz mono wav, so that tests, the demo and smoke training run the
code real AVSBench goes through, with nothing downloaded.

Why the task needs the audio: every frame shows two or more objects of different categories (each category
looks and sounds as in the synthetic AVE), but only the sounding ones are in the mask. Which visible object
sounds is independent of the picture — the sounding category cycles through all categories, the silent
companions are drawn from the rest and every category is silent in some clips — so a model that sees only the
frames can do no better than guessing among the objects; the sound says which.

* S4: exactly one object sounds, for all 5 s; the csv's category is its category.
* MS3: three objects are visible; one sounds throughout, and in two clips of three a second one joins, either
  for all 5 s or from a random second on. The mask is the union of those sounding in that second.

One ``numpy`` generator seeded by ``seed`` and deterministic PNG (zlib) and wav encoding make the same seed give
byte-identical files.
"""

from __future__ import annotations

import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from avadapt.data.synthetic import (
    ClassLook,
    SynthSummary,
    assign_splits,
    check_clips_and_size,
    distinct_ids,
    sounds_by_second,
    youtube_id,
)
from avadapt.tasks.avs.metadata import AVS_SEGMENTS, S4_CATEGORIES, AVSClip, AVSMedia, check_setting

_STEP = AVS_SEGMENTS - 1  # frame-to-frame moves of an object
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class _Clip:
    """One clip's objects and who sounds when."""

    categories: list[int]  # visible objects' categories, all distinct
    tops_lefts: np.ndarray  # (objects, AVS_SEGMENTS, 2) int: each object's box corner in each frame
    sounding: list[list[int]]  # per second, indices into ``categories`` of the sounding objects


def _place(rng: np.random.Generator, count: int, cell: int, object_size: int) -> np.ndarray:
    """(count, AVS_SEGMENTS, 2) box corners (top, left): one 2×2 grid cell per object, so objects never
    overlap, each drifting by at most one pixel a frame inside its cell."""
    slack = cell - object_size
    cells = rng.permutation(4)[:count]
    velocity = rng.integers(-1, 2, size=(count, 2)) if slack >= _STEP else np.zeros((count, 2), int)
    low = np.maximum(0, -velocity * _STEP)
    high = slack - np.maximum(0, velocity * _STEP)
    start = rng.integers(low, high + 1) + cell * np.stack([cells // 2, cells % 2], axis=1)  # (count, 2)
    return start[:, None, :] + velocity[:, None, :] * np.arange(AVS_SEGMENTS)[None, :, None]


def _draw_clip(
    rng: np.random.Generator, i: int, setting: str, num_classes: int, cell: int, object_size: int
) -> _Clip:
    """Clip ``i``: sounding category ``i mod C``; a silent companion ``d`` categories on, where ``d``
    cycles through 1..C−1 from one round of C clips to the next (so each category is silent in the
    first round, and either member of a pair sounds equally often); more objects drawn at random."""
    sounding_category = i % num_classes
    offset = 1 + (i // num_classes) % (num_classes - 1)
    categories = [sounding_category, (sounding_category + offset) % num_classes]
    extra = 1 if setting == "ms3" else int(num_classes >= 3 and rng.random() < 0.5)
    rest = [k for k in range(num_classes) if k not in categories]
    categories += [int(k) for k in rng.choice(rest, size=extra, replace=False)]
    if setting == "s4":
        sounding = [[0]] * AVS_SEGMENTS
    else:  # object 2 (a random category) joins the sound: never, throughout, or from a random second
        joins = {0: AVS_SEGMENTS, 1: 0, 2: int(rng.integers(1, AVS_SEGMENTS))}[i % 3]
        sounding = [[0] if t < joins else [0, 2] for t in range(AVS_SEGMENTS)]
    return _Clip(categories, _place(rng, len(categories), cell, object_size), sounding)


def _render(
    rng: np.random.Generator, clip: _Clip, looks: list[ClassLook], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(AVS_SEGMENTS, size, size, 3) uint8 frames: grey pixel noise (below 190 in every channel, so never a
    class colour) with the objects; and (AVS_SEGMENTS, size, size) bool masks of the sounding objects."""
    noise = rng.normal(0.0, 12.0, size=(AVS_SEGMENTS, size, size, 3))
    frames = np.clip(noise + rng.uniform(80, 140, size=3), 0, 190).astype(np.uint8)
    masks = np.zeros((AVS_SEGMENTS, size, size), dtype=bool)
    for j, k in enumerate(clip.categories):
        silhouette = looks[k].mask
        s = silhouette.shape[0]
        for t in range(AVS_SEGMENTS):
            top, left = clip.tops_lefts[j, t]
            looks[k].paint(frames[t], top, left)
            if j in clip.sounding[t]:
                masks[t, top : top + s, left : left + s] |= silhouette
    return frames, masks


def _write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


def _write_wav(path: Path, samples: np.ndarray) -> None:
    """16-bit PCM mono."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def synthesize_avs(
    out: str | Path,
    clips: int = 100,
    seed: int = 0,
    setting: str = "s4",
    num_classes: int | None = None,
    *,
    size: int = 64,
    split_fractions: tuple[float, float] = (0.15, 0.15),
) -> SynthSummary:
    """Write ``clips`` synthetic 5 s clips in AVSBench-object v1's native layout
    (:mod:`avadapt.tasks.avs.metadata`) under ``out``: S4's csv (``name,start,category,split``; 11-character
    ids, start 0) or MS3's (``name,split``; ids with a ``_k`` suffix), the RGB ``size``×``size`` frames, the
    masks (8-bit greyscale PNGs of 0 and 255; S4 train: frame 1 only, as in the real set) and the 16-bit PCM
    mono wavs. ``num_classes``: the first that many S4 categories (default 4; S4 needs ≥ 2, MS3 ≥ 3);
    ``split_fractions``: (val, test) shares.
    """
    check_setting(setting)
    num_classes = 4 if num_classes is None else num_classes
    fewest = 2 if setting == "s4" else 3
    if not fewest <= num_classes <= len(S4_CATEGORIES):
        raise ValueError(f"num_classes must lie in {fewest}..{len(S4_CATEGORIES)} for {setting}, got {num_classes}")
    check_clips_and_size(clips, size)
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = list(S4_CATEGORIES[:num_classes])
    object_size = size * 7 // 16  # 28 px at 64: one object covers 8–13 % of the frame
    looks = [ClassLook.of(k, object_size) for k in range(num_classes)]

    ms3 = setting == "ms3"  # MS3 names its clips <YouTube id>_<0..2>
    names = distinct_ids(clips, lambda: youtube_id(rng) + (f"_{rng.integers(0, 3)}" if ms3 else ""))
    split_of = assign_splits(rng, clips, split_fractions)

    rows = []
    for i, (name, split) in enumerate(zip(names, split_of)):
        clip = _draw_clip(rng, i, setting, num_classes, cell=size // 2, object_size=object_size)
        frames, masks = _render(rng, clip, looks, size)
        category = "" if ms3 else categories[clip.categories[0]]
        rows.append(f"{name},{split}" if ms3 else f"{name},0,{category},{split}")
        media = AVSMedia.of(out, setting, AVSClip(name, split, category, None, line=i + 2))
        for path, frame in zip(media.frames, frames):
            _write_png(path, frame)
        for path, mask in zip(media.masks, masks):
            if path is not None:  # None: a frame without a ground-truth mask
                _write_png(path, mask.astype(np.uint8) * 255)
        sounding = [[looks[clip.categories[j]] for j in objects] for objects in clip.sounding]
        _write_wav(media.wav, sounds_by_second(rng, sounding, SAMPLE_RATE))

    header = "name,split" if ms3 else "name,start,category,split"
    (out / f"{setting}_meta_data.csv").write_text("\n".join([header, *rows]) + "\n")
    counts = {split: split_of.count(split) for split in ("train", "val", "test")}
    return SynthSummary(generator=f"synthesize_avs ({setting})", root=out, rows=clips, splits=counts,
                        categories=categories, clip_seconds=AVS_SEGMENTS,
                        seconds=time.perf_counter() - started)
