"""Training order and augmentation drawn from the run's seed and the epoch number only, however many loader
processes decode the clips, so a run resumed after epoch ``e`` trains epoch ``e + 1`` exactly as the run that
never stopped."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

SEED_BITS = 63  # torch.Generator.manual_seed and torch.randint take non-negative int64 values


def derive_seed(*keys: int) -> int:
    """A seed mixed from several integers (run seed, epoch, stream…) by NumPy's ``SeedSequence``: nearby keys
    give unrelated seeds, so ``(seed, epoch)`` and ``(seed, epoch + 1)`` draw independent streams."""
    high, low = np.random.SeedSequence(list(keys)).generate_state(2, np.uint32)
    return ((int(high) << 32) | int(low)) & ((1 << SEED_BITS) - 1)


class EpochShuffle(Sampler[tuple[int, int]]):
    """A new permutation of ``range(size)`` each epoch (Lightning calls :meth:`set_epoch`), yielding
    ``(index, item_seed)`` pairs: the dataset draws the item's augmentation from ``item_seed``.

    ``clips`` (``ClipDataset.item_clips``) with ``items_per_clip`` > 1: items come in runs of up to
    ``items_per_clip`` items of one clip, each run with one seed (one crop, so the model runs the clip once
    for the run); the runs are shuffled, and so are the items inside each clip.
    """

    def __init__(self, size: int, seed: int, clips: list[int] | None = None, items_per_clip: int = 1):
        super().__init__()
        if items_per_clip < 1:
            raise ValueError(f"items_per_clip must be >= 1, got {items_per_clip}")
        if clips is not None and len(clips) != size:
            raise ValueError(f"clips names {len(clips)} items, the dataset has {size}")
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.groups = _group_by_clip(clips) if clips is not None and items_per_clip > 1 else None
        self.items_per_clip = items_per_clip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        if self.groups is None:
            order = torch.randperm(self.size, generator=generator)
            item_seeds = torch.randint(0, torch.iinfo(torch.int64).max, (self.size,), generator=generator)
            yield from zip(order.tolist(), item_seeds.tolist(), strict=True)
            return
        runs = []
        for items in self.groups:
            shuffled = [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
            runs.extend(shuffled[start:start + self.items_per_clip]
                        for start in range(0, len(shuffled), self.items_per_clip))
        run_seeds = torch.randint(0, torch.iinfo(torch.int64).max, (len(runs),), generator=generator).tolist()
        for k in torch.randperm(len(runs), generator=generator).tolist():
            for index in runs[k]:
                yield index, run_seeds[k]


def clip_order(clips: list[int] | None, size: int) -> list[int]:
    """Evaluation order: the items of one clip next to each other (clips in order of first appearance, items
    in dataset order within a clip), so a batch runs each clip once; ``range(size)`` when items are clips."""
    if clips is None:
        return list(range(size))
    return [index for items in _group_by_clip(clips) for index in items]


def _group_by_clip(clips: list[int]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for index, clip in enumerate(clips):
        groups.setdefault(clip, []).append(index)
    return list(groups.values())


class EpochLoader(DataLoader):
    """A ``DataLoader`` that opens its iterator at the first batch, not at ``iter()``: resuming a run,
    Lightning creates the training iterator before it sets the sampler's epoch, and loader processes fetch
    indices as soon as an iterator exists, which :class:`EpochShuffle` would then draw for the wrong epoch."""

    def __iter__(self) -> Iterator:
        yield from super().__iter__()
