"""One LightningDataModule for every registered dataset: train / val / test loaders over a native root or a
prepared cache, picked by name (``dataset``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from avadapt._registry import DATASETS
from avadapt.audio_front_ends import FbankConfig, recorded_audio_front_end
from avadapt.data.base import ClipDataset, collate_av
from avadapt.data.sampling import EpochLoader, EpochShuffle, clip_order
from avadapt.data.transforms import VideoTransform
from avadapt.errors import OptionError


class AVDataModule(L.LightningDataModule):
    """Loaders for the three splits of a registered dataset, preprocessed the way the model says.

    Args:
        root: the dataset's annotation root (AVE: the folder with ``Annotations.txt`` and the split files).
        dataset: a name in ``avadapt._registry.DATASETS`` (``ave``, ``avs_s4``, …); default: the model task's
            dataset (``preprocessing["dataset"]``, linked from the model by the CLI).
        dataset_options: the dataset's own constructor options, added to the model's
            (``preprocessing["dataset_options"]``).
        cache_dir: a cache written by ``avadapt prepare``, read instead of the media; its image size and fbank
            settings must equal the model's (checked when opened).
        media_root: where the media lives when not under ``root``.
        source: which layout to read, one of the dataset's (AVE: ``mp4``, ``frames``, ``cache``); ``auto`` picks the
            cache when given, else the media folder found.
        batch_size: clips per training batch (per device).
        eval_batch_size: clips per validation/test batch (default: ``batch_size``).
        num_workers: loader processes decoding clips.
        augment: augment training clips the dataset's way (AVE: one RandomResizedCrop + flip per clip).
        on_missing: rows without media raise (``error``) or are skipped with a warning (``skip``).
        preprocessing: ``{"video": timm data config, "audio_front_end": name, "fbank": FbankConfig fields}``,
            linked from ``model.preprocessing`` by the CLI so that frames and spectrograms match the model;
            the fbank is the named front end's (default ``vit``) with the ``fbank`` fields replacing its own.
        pin_memory: page-locked batches for faster GPU copies (default: when CUDA is available).
        items_per_clip: where several items share a clip (AVQA: a video's questions), put up to this many of
            one clip's items next to each other in training batches, with one crop, so the model runs the clip
            once for them all (1: items shuffled one by one). Evaluation batches always keep them together.

    Training order and augmentation come from the run's seed (torch's when the data module is built) and the
    epoch number only (:mod:`avadapt.data.sampling`); checkpoints keep the seed.
    """

    def __init__(
        self,
        root: str,
        dataset: str | None = None,
        dataset_options: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        media_root: str | None = None,
        source: str = "auto",
        batch_size: int = 2,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        augment: bool = True,
        on_missing: Literal["error", "skip"] = "error",
        preprocessing: dict[str, Any] | None = None,
        pin_memory: bool | None = None,
        items_per_clip: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["preprocessing"])
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(f"batch sizes must be ≥ 1, got {batch_size}, {eval_batch_size}")
        if items_per_clip < 1:
            raise ValueError(f"items_per_clip must be ≥ 1, got {items_per_clip}")
        self.root = Path(root)
        self.preprocessing = preprocessing or {}
        self.datasets: dict[str, ClipDataset] = {}
        self.seed = torch.initial_seed()

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seed = int(state_dict.get("seed", self.seed))

    @property
    def dataset_name(self) -> str:
        name = self.hparams.dataset or self.preprocessing.get("dataset")
        if name is None:
            raise OptionError("AVDataModule needs a dataset: name one (dataset=) or give the model's "
                              "preprocessing, which names its task's")
        return name

    @property
    def dataset_class(self) -> type[ClipDataset]:
        return DATASETS.get(self.dataset_name)

    @property
    def dataset_options(self) -> dict[str, Any]:
        """The model's needs (``preprocessing["dataset_options"]``), then those given here, which win."""
        return {**self.preprocessing.get("dataset_options", {}), **(self.hparams.dataset_options or {})}

    @cached_property
    def class_names(self) -> list[str] | None:
        """The dataset's class names in label order (AVE: the 28 categories, then ``background``)."""
        return self.dataset_class.class_names(self.root, **self.dataset_options)

    @property
    def num_classes(self) -> int | None:
        names = self.class_names
        return len(names) if names is not None else None

    def _transform(self, train: bool) -> VideoTransform:
        video = self.preprocessing.get("video")
        if video is None:
            raise ValueError("AVDataModule needs preprocessing={'video': <timm data config>, 'fbank': {...}}"
                             "; the CLI links it from the model (model.preprocessing)")
        augmentation = self.dataset_class.train_augmentation
        overrides = augmentation if train and self.hparams.augment and augmentation else {}
        return VideoTransform.from_timm(video, **overrides)

    @property
    def fbank(self) -> FbankConfig:
        """The fbank settings of the clips: those of the audio front end that ``preprocessing`` names."""
        return recorded_audio_front_end(self.preprocessing).fbank

    def _dataset(self, split: str) -> ClipDataset:
        hp = self.hparams
        return self.dataset_class(
            self.root,
            split,
            source=hp.source,
            media_root=hp.media_root,
            cache_dir=hp.cache_dir,
            transform=self._transform(split == "train"),
            fbank=self.fbank,
            on_missing=hp.on_missing,
            augment=split == "train" and hp.augment,
            **self.dataset_options,
        )

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits[stage]:
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def _loader(self, split: str) -> DataLoader:
        hp = self.hparams
        train = split == "train"
        dataset = self.datasets[split]
        clips = dataset.item_clips()
        if train:
            sampler = EpochShuffle(len(dataset), self.seed, clips, hp.items_per_clip)
        else:
            sampler = clip_order(clips, len(dataset)) if clips is not None else None
        return (EpochLoader if train else DataLoader)(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            sampler=sampler,
            num_workers=hp.num_workers,
            collate_fn=collate_av,
            pin_memory=torch.cuda.is_available() if hp.pin_memory is None else hp.pin_memory,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
