"""What the synthetic datasets (``avadapt synth TASK``) share, a class looking and sounding the same whatever
task shows it: class looks and sounds, backgrounds, fades, ids, split shares and the summary line."""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PALETTE = np.array(
    [
        [230, 40, 40],
        [40, 200, 60],
        [50, 90, 240],
        [240, 220, 40],
        [220, 60, 220],
        [40, 220, 220],
        [250, 250, 250],
    ],
    dtype=np.float32,
)
_SHAPES = ("disk", "square", "triangle", "ring", "cross", "diamond")
ID_ALPHABET = string.ascii_letters + string.digits + "-_"  # YouTube id characters


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """(size, size) bool silhouette of one class's shape."""
    y, x = np.mgrid[:size, :size] / (size - 1) * 2 - 1  # [-1, 1]²
    r = np.hypot(x, y)
    masks = {
        "disk": r <= 0.95,
        "square": (np.abs(x) <= 0.8) & (np.abs(y) <= 0.8),
        "triangle": (y >= -0.9) & (y <= 0.9) & (np.abs(x) <= (y + 0.9) / 1.8 * 0.95),
        "ring": (r <= 0.95) & (r >= 0.55),
        "cross": (np.abs(x) <= 0.3) | (np.abs(y) <= 0.3),
        "diamond": np.abs(x) + np.abs(y) <= 0.95,
    }
    return masks[shape]


@dataclass(frozen=True)
class ClassLook:
    """How class k looks and sounds; fixed by k alone so every clip of a class agrees."""

    mask: np.ndarray  # (s, s) bool
    colour: np.ndarray  # (3,) float
    orbit_hz: float  # turns per second of the shape's circular path
    pitch_hz: float
    harmonics: int
    am_hz: float

    @classmethod
    def of(cls, k: int, object_size: int) -> ClassLook:
        return cls(
            mask=_shape_mask(_SHAPES[k % len(_SHAPES)], object_size),
            colour=_PALETTE[k % len(_PALETTE)],  # (shape, colour) pairs are distinct for k < 42
            orbit_hz=0.15 + 0.05 * (k % 4),
            # 4 octaves from 250 Hz in steps of 4/28 octave, visited in a scrambled order (5k mod 28)
            # so that the first few classes are far apart; all 28 fall in distinct mel bins
            pitch_hz=250.0 * 2 ** (4 * ((5 * k) % 28) / 28),
            harmonics=1 + k % 3,
            am_hz=2.0 + 1.5 * (k % 5),
        )

    def sound(self, t: np.ndarray) -> np.ndarray:
        """The class's sound at times ``t`` (s), peak ≈ 0.3."""
        tone = sum(np.sin(2 * np.pi * self.pitch_hz * h * t) / h for h in range(1, self.harmonics + 1))
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * self.am_hz * t)
        return (0.3 / 1.8) * tone * envelope

    def paint(self, frames: np.ndarray, top: int, left: int) -> None:
        """Draw the class's shape in its colour, box corner at (top, left), on (…, H, W, 3) ``frames``."""
        s = self.mask.shape[0]
        frames[..., top : top + s, left : left + s, :][..., self.mask, :] = self.colour


def check_clips_and_size(clips: int, size: int, multiple: int = 1) -> None:
    """Fail on a clip count below 1, or a frame size below 32 px or not a multiple of ``multiple`` (16 for
    frames of whole 8×8 noise blocks encoded in whole H.264 macroblocks)."""
    if clips < 1 or size < 32 or size % multiple:
        also = f" and a multiple of {multiple}" if multiple > 1 else ""
        raise ValueError(f"need clips >= 1 and size >= 32{also}, got {clips}, {size}")


def blocky_noise(rng: np.random.Generator, frames: int, size: int, std: float) -> np.ndarray:
    """(frames, size, size, 3) float32 zero-mean noise, constant over each of 8×8 blocks: it changes every
    frame, yet stays cheap to encode."""
    coarse = rng.normal(0.0, std, size=(frames, 8, 8, 3)).astype(np.float32)
    return coarse.repeat(size // 8, axis=1).repeat(size // 8, axis=2)  # (frames, size, size, 3)


def fade(samples: int, sample_rate: int) -> np.ndarray:
    """(samples,) gain rising from 0 to 1 over the first 10 ms and falling back over the last 10 ms, so that a
    sound starting or stopping makes no click."""
    ramp = np.minimum(np.arange(samples), np.arange(samples)[::-1])
    return np.minimum(1.0, ramp / (0.01 * sample_rate))


def sounds_by_second(
    rng: np.random.Generator, sounding: Sequence[Sequence[ClassLook]], sample_rate: int
) -> np.ndarray:
    """(len(sounding)·sample_rate,) float64: low noise plus, in each second, the sounds of the classes
    ``sounding`` lists for it, each faded in and out within the second."""
    t = np.arange(len(sounding) * sample_rate) / sample_rate
    wave = rng.normal(0.0, 0.01, size=t.size)
    gain = fade(sample_rate, sample_rate)
    for second, looks in enumerate(sounding):
        span = slice(second * sample_rate, (second + 1) * sample_rate)
        for look in looks:
            wave[span] += look.sound(t[span]) * gain
    return wave


def distinct_ids(count: int, draw: Callable[[], str]) -> list[str]:
    """``count`` distinct ids in the order ``draw`` gives them, drawing again on a repeat."""
    ids: list[str] = []
    while len(ids) < count:
        candidate = draw()
        if candidate not in ids:
            ids.append(candidate)
    return ids


def youtube_id(rng: np.random.Generator) -> str:
    """An 11-character id of YouTube's alphabet, as the real datasets name their clips."""
    return "".join(rng.choice(list(ID_ALPHABET), size=11))


def assign_splits(
    rng: np.random.Generator, n: int, fractions: tuple[float, float], at_least_one_from: int = 10
) -> list[str]:
    """A shuffled share of the clips to val and test (≥ 1 each from ``at_least_one_from`` clips up), the rest
    to train."""
    counts = [round(f * n) for f in fractions]
    if n >= at_least_one_from:
        counts = [max(1, c) for c in counts]
    position = np.argsort(rng.permutation(n))  # each clip's place in a shuffled order
    return ["val" if p < counts[0] else "test" if p < sum(counts) else "train" for p in position]


def split_counts(counts: dict[str, int]) -> str:
    """``train 8 / val 2 / test 2``."""
    return " / ".join(f"{name} {count}" for name, count in counts.items())


@dataclass(kw_only=True)
class SynthSummary:
    """What a synthetic generator wrote under ``root``; ``str()`` is the line ``avadapt synth`` prints."""

    generator: str  # who wrote it (``synthesize_avs (s4)``)
    root: Path
    rows: int  # clips
    splits: dict[str, int]  # clips per split
    categories: list[str]  # class names, in label order
    clip_seconds: int
    seconds: float  # how long writing took

    def details(self) -> str:
        """What else the files hold, for the printed line."""
        return f", {len(self.categories)} categories"

    def __str__(self) -> str:
        return (
            f"{self.generator}: {self.rows} clips of {self.clip_seconds} s ({split_counts(self.splits)})"
            f"{self.details()}, in {self.seconds:.1f} s -> {self.root}"
        )
