"""What every registered dataset offers the generic data module, and the one collate function.

A dataset registers its class in ``avadapt._registry.DATASETS`` and sets the class attributes below; the data
module (:class:`avadapt.data.datamodule.AVDataModule`) then builds its splits by name, whatever the task.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from avadapt.types import AVBatch

SPLITS = ("train", "val", "test")


class ClipDataset(Dataset):
    """Base of the registered datasets: clips of ``num_segments`` segments of ``segment_seconds`` each.

    Constructor: ``(root, split, *, source, media_root, cache_dir, transform, fbank, on_missing, augment,
    **options)`` where ``options`` are the dataset's own (``dataset_options`` of the data module).

    task: the task whose targets the items carry (``ave``, ``avs``).
    train_augmentation: ``VideoTransform`` overrides for training frames, or None when the dataset augments
        (or not) itself, e.g. because its masks must follow every crop and flip.
    Items: ``{"video": (T, 3, H, W), "audio": (T, 1, F, L), <targets>..., "inputs": {...}, "meta": {...}}``;
    batched by :func:`collate_av`.
    """

    task: ClassVar[str]
    num_segments: ClassVar[int]
    segment_seconds: ClassVar[float] = 1.0
    train_augmentation: ClassVar[dict[str, Any] | None] = None

    def item_clips(self) -> list[int] | None:
        """The clip each item shows, numbered per split, when several items share one clip (AVQA: the questions
        of one video); None when every item is its own clip. Loaders then put a clip's items next to each other
        so that the model runs the clip once for all of them (``AVModel.forward``)."""
        return None

    @classmethod
    def class_names(cls, root: str | Path, **options: Any) -> list[str] | None:
        """Names of the classes the task's head predicts, in label order (None: the task has no classes)."""
        return None

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, *, workers: int, image_size: int, fbank: Any,
                media_root: str | Path | None, crop_pct: float, progress: bool = True) -> Any:
        """``avadapt prepare``: decode every clip once into a cache (resumable); returns a summary whose
        ``failed`` lists the clips that could not be decoded (also written to ``OUT/bad_clips.tsv``)."""
        raise NotImplementedError(f"{cls.__name__} has no prepare step")

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        """``avadapt synth``: a small dataset of real media files in this dataset's native layout."""
        raise NotImplementedError(f"{cls.__name__} has no synthetic version")


def collate_av(samples: Sequence[dict[str, Any]]) -> AVBatch:
    """Stack dataset items into an :class:`AVBatch`.

    ``video`` and ``audio`` are stacked to (B, T, …); the tensors under ``inputs`` into ``AVBatch.inputs``;
    every other tensor entry (``labels``, ``masks``, …) into ``targets``; ``meta`` becomes a dict of lists.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    reserved = ("video", "audio", "meta", "inputs")
    targets = {
        key: torch.stack([s[key] for s in samples])
        for key, value in samples[0].items()
        if key not in reserved and isinstance(value, torch.Tensor)
    }
    inputs = {key: torch.stack([s["inputs"][key] for s in samples]) for key in samples[0].get("inputs", {})}
    meta: dict[str, list] = defaultdict(list)
    for sample in samples:
        for key, value in sample.get("meta", {}).items():
            meta[key].append(value)
    return AVBatch(
        video=torch.stack([s["video"] for s in samples]),  # (B, T, 3, H, W)
        audio=torch.stack([s["audio"] for s in samples]),  # (B, T, 1, F, L)
        targets=targets,
        meta=dict(meta),
        inputs=inputs,
    )
