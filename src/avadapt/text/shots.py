"""Few-shot training sets: K clips per class, chosen once and recorded, so a run says what it trained on.

The reference (haoyi-duan/DG-SCT, few-shot/dataloader.py) keeps the first K clips of each class in list order,
and for LLP only clips with one label. Here the choice is seeded (``seed=None`` gives the reference's list order)
and multi-label clips take part:

* each clip is used at most once, and counts for every class it has;
* classes are filled rarest first (fewest clips with that class), so a class with few clips gets them before
  other classes fill up and shut them out;
* a class takes, in the seed's order, clips none of whose classes already has K; so no class passes K, and a
  class ends below K only when every remaining clip of it would push another class past K (``counts`` says so).

Single-label lists always get exactly K per class.
"""

from __future__ import annotations

import json
import numbers
import random
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

from avadapt.errors import OptionError


@dataclass(frozen=True)
class ShotSelection:
    """The clips a few-shot run trains on: their indices in the source list (ascending) and how many clips of
    each class that makes (multi-label clips count for each of their classes)."""

    indices: list[int]
    counts: dict[str, int]  # class name → clips chosen that have it, in label order
    k: int
    seed: int | None  # None: the first clips of each class in list order (the reference's choice)
    source: str  # the list the indices point into

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ShotSelection:
        values = json.loads(text)
        return cls(**{**values, "indices": [int(i) for i in values["indices"]]})


def _label_sets(labels: Sequence[int | Collection[int]], num_classes: int) -> list[frozenset[int]]:
    sets = [frozenset([int(label)]) if isinstance(label, numbers.Integral) else frozenset(int(k) for k in label) for label in labels]
    for index, classes in enumerate(sets):
        outside = sorted(k for k in classes if not 0 <= k < num_classes)
        if outside:
            raise ValueError(f"clip {index} has label(s) {outside} outside the {num_classes} classes")
    return sets


def sample_shots(labels: Sequence[int | Collection[int]], k: int, seed: int | None,
                 class_names: Sequence[str], source: str) -> ShotSelection:
    """K clips per class from ``labels`` (one per clip: a class index, or a set of indices for a multi-label
    list), by the rule in the module docstring. ``source`` names the list in the record and in the error raised
    when a class has fewer than K clips (:class:`OptionError`)."""
    if k < 1:
        raise OptionError(f"--shots must be at least 1, got {k}")
    sets = _label_sets(labels, len(class_names))
    members = {c: [i for i, classes in enumerate(sets) if c in classes] for c in range(len(class_names))}
    smallest = min(members, key=lambda c: len(members[c]))
    if len(members[smallest]) < k:
        raise OptionError(f"--shots {k} is more than the {len(members[smallest])} training clips of class "
                          f"{class_names[smallest]!r} in {source}")
    order = random.Random(seed).sample(range(len(sets)), len(sets)) if seed is not None else range(len(sets))
    rank = {index: position for position, index in enumerate(order)}
    counts = [0] * len(class_names)
    chosen: set[int] = set()
    for c in sorted(members, key=lambda c: (len(members[c]), c)):
        for index in sorted(members[c], key=rank.__getitem__):
            if counts[c] == k:
                break
            if index not in chosen and all(counts[other] < k for other in sets[index]):
                chosen.add(index)
                for other in sets[index]:
                    counts[other] += 1
    return ShotSelection(sorted(chosen), dict(zip(class_names, counts)), k, seed, source)
