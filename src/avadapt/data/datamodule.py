"""AVE as a LightningDataModule: train / val / test loaders over the native root or a prepared cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from avadapt.audio_front_ends import FbankConfig, recorded_audio_front_end
from avadapt.data.ave import AVEAnnotations, AVEDataset, collate_av
from avadapt.data.sampling import EpochLoader, EpochShuffle
from avadapt.data.transforms import VideoTransform

TRAIN_CROP_SCALE = (
    0.5,
    1.0,
)  # RandomResizedCrop area range, one crop per clip (VideoTransformConfig default)


class AVEDataModule(L.LightningDataModule):
    """Loaders for the three AVE splits, preprocessed the way the model says.

    Args:
        root: folder with ``Annotations.txt`` and ``trainSet/valSet/testSet.txt``.
        cache_dir: a cache written by ``avadapt prepare``, read instead of the media; its image size and fbank
            settings must equal the model's (checked when opened).
        media_root: where the media lives, as ``AVE/<id>.mp4`` or ``video_frames/`` + ``raw_audio/`` (default: root).
        source: which layout to read; ``auto`` picks the cache when given, else the media folder found.
        batch_size: clips per training batch (per device).
        eval_batch_size: clips per validation/test batch (default: ``batch_size``).
        num_workers: loader processes decoding clips.
        augment: one RandomResizedCrop + horizontal flip per training clip (the same for all T frames).
        on_missing: rows without media raise (``error``) or are skipped with a warning (``skip``).
        preprocessing: ``{"video": timm data config, "audio_front_end": name, "fbank": FbankConfig fields}``;
            linked from ``model.preprocessing`` by the CLI so the transform and the spectrograms always match the
            model, not set by hand. The fbank is the named front end's (``avadapt.audio_front_ends``; ``vit``
            when no name is given) with the ``fbank`` fields replacing its own.
        pin_memory: page-locked batches for faster GPU copies (default: when CUDA is available).

    The training order and each clip's crop and flip are drawn from the run's seed (torch's seed when the data
    module is built: ``seed_everything``) and the epoch number only (:class:`~avadapt.data.sampling.EpochShuffle`),
    whatever the number of workers, so a resumed run replays an epoch exactly; checkpoints keep the seed.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str | None = None,
        media_root: str | None = None,
        source: Literal["auto", "mp4", "frames", "cache"] = "auto",
        batch_size: int = 2,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        augment: bool = True,
        on_missing: Literal["error", "skip"] = "error",
        preprocessing: dict[str, Any] | None = None,
        pin_memory: bool | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["preprocessing"])
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(f"batch sizes must be ≥ 1, got {batch_size}, {eval_batch_size}")
        self.root = Path(root)
        self.preprocessing = preprocessing or {}
        self.datasets: dict[str, AVEDataset] = {}
        self._annotations: AVEAnnotations | None = None
        self.seed = torch.initial_seed()

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seed = int(state_dict.get("seed", self.seed))

    @property
    def annotations(self) -> AVEAnnotations:
        if self._annotations is None:
            self._annotations = AVEAnnotations.load(self.root)
        return self._annotations

    @property
    def class_names(self) -> list[str]:
        """The 28 AVE categories in label order, then ``background``."""
        return [*self.annotations.categories, "background"]

    @property
    def num_classes(self) -> int:
        return self.annotations.num_classes

    def _transform(self, train: bool) -> VideoTransform:
        video = self.preprocessing.get("video")
        if video is None:
            raise ValueError(
                "AVEDataModule needs preprocessing={'video': <timm data config>, 'fbank': {...}}; "
                "the CLI links it from the model (model.preprocessing)"
            )
        overrides = {"train": True, "scale": TRAIN_CROP_SCALE} if train and self.hparams.augment else {}
        return VideoTransform.from_timm(video, **overrides)

    @property
    def fbank(self) -> FbankConfig:
        """The fbank settings of the clips: those of the audio front end that ``preprocessing`` names."""
        return recorded_audio_front_end(self.preprocessing).fbank

    def _dataset(self, split: str) -> AVEDataset:
        hp = self.hparams
        return AVEDataset(
            self.root,
            split,
            source=hp.source,
            media_root=hp.media_root,
            cache_dir=hp.cache_dir,
            transform=self._transform(split == "train"),
            fbank=self.fbank,
            on_missing=hp.on_missing,
        )

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[
            stage
        ]
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def _loader(self, split: str) -> DataLoader:
        hp = self.hparams
        train = split == "train"
        dataset = self.datasets[split]
        return (EpochLoader if train else DataLoader)(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            sampler=EpochShuffle(len(dataset), self.seed) if train else None,
            num_workers=hp.num_workers,
            collate_fn=collate_av,
            drop_last=False,
            pin_memory=torch.cuda.is_available() if hp.pin_memory is None else hp.pin_memory,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
