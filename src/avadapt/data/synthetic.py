"""What the synthetic datasets share: how each class looks and sounds, YouTube-like ids, split shares.

Every task's synthetic generator (``avadapt synth TASK``) draws its clips from these, so that a class looks and
sounds the same whatever task shows it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

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


def assign_splits(rng: np.random.Generator, n: int, fractions: tuple[float, float]) -> list[str]:
    """A shuffled share of the clips to val and test (≥ 1 each from 10 clips up), the rest to train."""
    counts = [round(f * n) for f in fractions]
    if n >= 10:
        counts = [max(1, c) for c in counts]
    order = rng.permutation(n)
    split_of = ["train"] * n
    for i in order[: counts[0]]:
        split_of[i] = "val"
    for i in order[counts[0] : counts[0] + counts[1]]:
        split_of[i] = "test"
    return split_of
