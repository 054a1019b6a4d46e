"""Training order and augmentation that depend on the run's seed and the epoch number only.

An epoch is then a pure function of ``(seed, epoch)``: which clips come in which order, and which crop and flip
each clip gets, whatever happened before it, however many loader processes decode the clips and whether the
run was stopped and resumed in between. A run resumed from the checkpoint at the end of epoch ``e`` replays
epoch ``e + 1`` exactly as the run that never stopped trains it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

SEED_BITS = 63  # torch.Generator.manual_seed and torch.randint take non-negative int64 values


def derive_seed(*keys: int) -> int:
    """A seed mixed from several integers (run seed, epoch, stream…) by NumPy's ``SeedSequence``: nearby keys
    give unrelated seeds, so ``(seed, epoch)`` and ``(seed, epoch + 1)`` draw independent streams."""
    if any(key < 0 for key in keys):
        raise ValueError(f"seed keys must be non-negative, got {keys}")
    high, low = np.random.SeedSequence(list(keys)).generate_state(2, np.uint32)
    return ((int(high) << 32) | int(low)) & ((1 << SEED_BITS) - 1)


class EpochShuffle(Sampler[tuple[int, int]]):
    """A new permutation of ``range(size)`` each epoch, with one augmentation seed per item.

    Yields ``(index, item_seed)`` pairs; a dataset that accepts such a key draws the item's random augmentation
    from ``torch.Generator().manual_seed(item_seed)``. Lightning calls :meth:`set_epoch` at the start of every
    training epoch (as for a ``DistributedSampler``, which it forwards to when it wraps this sampler), and the
    order is drawn when iteration starts.

    Args:
        size: number of items.
        seed: the run's seed.
    """

    def __init__(self, size: int, seed: int):
        super().__init__()
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator)
        item_seeds = torch.randint(0, torch.iinfo(torch.int64).max, (self.size,), generator=generator)
        yield from zip(order.tolist(), item_seeds.tolist(), strict=True)


class EpochLoader(DataLoader):
    """A ``DataLoader`` that opens its iterator at the first batch, not when ``iter()`` is called.

    Lightning creates the training iterator before it sets the sampler's epoch when it resumes a run, and loader
    processes fetch their first indices as soon as an iterator exists; deferring the iterator to the first
    ``next()`` lets :class:`EpochShuffle` see the epoch it is drawing for.
    """

    def __iter__(self) -> Iterator:
        yield from super().__iter__()
