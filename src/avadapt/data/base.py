"""What every registered dataset offers the generic data module (``avadapt.data.datamodule.AVDataModule``,
which builds its splits by name, whatever the task), the machinery the datasets share (source resolution,
cache checks, missing-media reports, cached clips), and the one collate function.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch.utils.data import Dataset

from avadapt._registry import DATASETS
from avadapt.audio_front_ends import DEFAULT_AUDIO_FRONT_END, audio_front_end
from avadapt.data.cache import (
    BAD_CLIPS,
    CACHE_JSON,
    CacheConfigError,
    CacheSettings,
    check_cache_settings,
    clip_file,
    load_cached_clip,
)
from avadapt.data.fbank import FbankConfig
from avadapt.data.transforms import VideoTransform
from avadapt.errors import MissingMediaError
from avadapt.types import AVBatch

SPLITS = ("train", "val", "test")
Item = TypeVar("Item")


def default_fbank() -> FbankConfig:
    """The fbank of the default audio front end: what datasets and caches use when given none."""
    return audio_front_end(DEFAULT_AUDIO_FRONT_END).fbank


def seeded(key: int | tuple[int, int]) -> tuple[int, int | None, torch.Generator | None]:
    """(index, seed, generator) of an item key: an index, or ``(index, seed)`` as ``EpochShuffle`` yields
    them, so that an item's augmentation comes from that seed alone, whichever process loads it."""
    index, seed = key if isinstance(key, tuple) else (key, None)
    return index, seed, torch.Generator().manual_seed(seed) if seed is not None else None


class ClipDataset(Dataset):
    """Base of the registered datasets: clips of ``num_segments`` segments of ``segment_seconds`` each.

    Constructor: ``(root, split, *, source, media_root, cache_dir, transform, fbank, on_missing, augment,
    **options)``, the options of :class:`~avadapt.data.datamodule.AVDataModule` plus the dataset's own;
    :meth:`__init__` and :meth:`keep_with_media` handle the shared ones. Items, by index or by ``(index, seed)``
    (:func:`seeded`): ``{"video": (T, 3, H, W), "audio": (T, 1, F, L), <targets>..., "inputs": {...},
    "meta": {...}}``, batched by :func:`collate_av`.
    """

    name: ClassVar[str]  # the registered name, recorded in the dataset's caches and checked when one is read
    task: ClassVar[str]  # the task whose targets the items carry
    num_segments: ClassVar[int]
    segment_seconds: ClassVar[float] = 1.0
    # VideoTransform overrides for training frames; None: the dataset augments itself (masks follow each crop)
    train_augmentation: ClassVar[dict[str, Any] | None] = None
    # the native media layouts ``source`` may name, each with a clip's files (or folders) under ``media_root``,
    # ``{clip}`` standing for its name; ``source="auto"`` without a cache reads the first whose first file's folder
    # exists (a layout without files is always there; its dataset overrides :meth:`media_paths`)
    layouts: ClassVar[dict[str, tuple[str, ...]]] = {}
    # how messages name the dataset, one clip's media and one item
    title: ClassVar[str]
    clip_noun: ClassVar[str] = "video id"
    item_noun: ClassVar[str] = "row"

    def __init__(self, root: str | Path, split: str, *, media_root: str | Path | None = None,
                 cache_dir: str | Path | None = None, transform: VideoTransform | None = None,
                 fbank: FbankConfig | None = None, on_missing: str = "error", augment: bool = False):
        if on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        if split not in SPLITS:
            raise ValueError(f"unknown {self.title} split {split!r}; choose from {list(SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.media_root = Path(media_root) if media_root is not None else self.root
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.transform = transform or VideoTransform()
        self.fbank = fbank or default_fbank()
        self.on_missing = on_missing
        self.augment = augment

    def item_clips(self) -> list[int] | None:
        """The clip each item shows, numbered per split, when several items share one clip (AVQA: the questions
        of one video), so that loaders can batch them together; None when every item is its own clip."""
        return None

    @classmethod
    def class_names(cls, root: str | Path, **options: Any) -> list[str] | None:
        """Names of the classes the task's head predicts, in label order (None: the task has no classes)."""
        return None

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, **settings: Any) -> Any:
        """``avadapt prepare``: decode every clip once into a cache (resumable); returns a summary whose
        ``failed`` lists the clips that could not be decoded (also written to ``OUT/bad_clips.tsv``)."""
        raise NotImplementedError(f"{cls.__name__} has no prepare step")

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        """``avadapt synth``: a small dataset of real media files in this dataset's native layout."""
        raise NotImplementedError(f"{cls.__name__} has no synthetic version")

    @classmethod
    def cache_settings(cls, image_size: int, fbank: FbankConfig | None = None, crop_pct: float = 1.0,
                       interpolation: str = "bicubic", min_seconds: float | None = None,
                       crop_mode: str = "center") -> CacheSettings:
        """What a cache of this dataset records (its name among them)."""
        return CacheSettings(image_size=image_size, crop_pct=crop_pct, interpolation=interpolation,
                             crop_mode=crop_mode, num_segments=cls.num_segments, segment_seconds=cls.segment_seconds,
                             min_seconds=min_seconds, fbank=fbank or default_fbank(), dataset=cls.name)

    # ---- media -------------------------------------------------------------------------------------
    @classmethod
    def find_layout(cls, media_root: Path) -> str:
        """The first of :attr:`layouts` present under ``media_root``: what ``source="auto"`` reads without a cache."""
        folders = {layout: Path(files[0]).parent if files else Path() for layout, files in cls.layouts.items()}
        for layout, folder in folders.items():
            if folder == Path() or (media_root / folder).is_dir():
                return layout
        expected = " or ".join(f"{folder}/" for folder in folders.values())
        raise MissingMediaError(f"{media_root}: no {cls.title} media found — expected {expected}, or pass "
                                "cache_dir= from avadapt prepare")

    @classmethod
    def layout_paths(cls, media_root: Path, layout: str, clip: str) -> list[Path]:
        """The native files (or folders) of one clip in ``layout``."""
        return [media_root / file.format(clip=clip) for file in cls.layouts[layout]]

    def media_paths(self, clip: str) -> list[Path]:
        """The native files (or folders) of one clip in the layout ``self.source``."""
        return self.layout_paths(self.media_root, self.source, clip)

    def cache_file(self, clip: str) -> Path:
        """``<cache_dir>/<clip>.safetensors``."""
        return clip_file(self.cache_dir, clip)

    def missing_media(self, clip: str) -> str | None:
        """What of one clip's media is missing, in words, or None when all of it is there."""
        paths = [self.cache_file(clip)] if self.source == "cache" else self.media_paths(clip)
        absent = [path for path in paths if not path.exists()]
        return f"expected {', '.join(map(str, absent))}" if absent else None

    def keep_with_media(self, source: str, items: list[Item], clip_of: Callable[[Item], Hashable]) -> list[Item]:
        """Resolve ``source``, check a cache's settings, and return the items whose clip (``clip_of``) has
        media; the others raise or are skipped, as ``on_missing`` says."""
        self.source = self._resolve_source(source)
        if self.source == "cache":
            self._check_cache()
        problems = {clip: self.missing_media(clip) for clip in dict.fromkeys(map(clip_of, items))}
        missing = {clip: problem for clip, problem in problems.items() if problem is not None}
        if not missing:
            return items
        lines = [f"  {clip}: {problem}" for clip, problem in list(missing.items())[:10]]
        more = f"\n  … and {len(missing) - 10} more" if len(missing) > 10 else ""
        folder, hint = self.media_root, ""
        if self.source == "cache":
            folder, hint = self.cache_dir, f"\n(clips that failed to prepare are listed in {self.cache_dir / BAD_CLIPS})"
        message = (
            f"{folder}: {len(missing)} {self.clip_noun}(s) of {self.title} split {self.split!r} have no media "
            f"({self.source} layout):\n" + "\n".join(lines) + more + hint
        )
        if self.on_missing == "error":
            raise MissingMediaError(message)
        warnings.warn(message + f"\ntheir {self.item_noun}s are skipped", stacklevel=3)
        return [item for item in items if clip_of(item) not in missing]

    def _resolve_source(self, source: str) -> str:
        sources = ("auto", *self.layouts, "cache")
        if source not in sources:
            raise ValueError(f"source must be {', '.join(sources[:-1])} or cache, got {source!r}")
        if source == "cache" and self.cache_dir is None:
            raise ValueError("source='cache' needs cache_dir")
        if source != "auto":
            return source
        return "cache" if self.cache_dir is not None else self.find_layout(self.media_root)

    def _check_cache(self) -> None:
        """A cache is read only when it holds this dataset's clips, prepared as this dataset reads them: frames of
        the transform's size and crop mode (the model's, which prediction applies too), audio with the fbank."""
        path = self.cache_dir / CACHE_JSON
        video = self.transform.cfg
        if video.input_size[0] != video.input_size[1]:
            raise CacheConfigError(f"{path}: caches hold square frames; the transform asks for {video.input_size}")
        check_cache_settings(path, {"dataset": self.name, "num_segments": self.num_segments,
                                    "segment_seconds": self.segment_seconds, "image_size": video.input_size[0],
                                    "crop_mode": video.crop_mode, "fbank": self.fbank})

    def decode(self, clip: str) -> tuple[Any, torch.Tensor]:
        """(frames (T, H, W, 3) uint8, audio (T, 1, F, L)) of one clip read from its native media."""
        raise NotImplementedError

    def load_media(self, clip: str, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Video (T, 3, H, W) float and audio (T, 1, F, L) float of one clip, transformed; a training
        transform draws its crop and flip from ``generator`` (default: torch's global generator)."""
        if self.source != "cache":
            frames, audio = self.decode(clip)
            return self.transform(frames, generator), audio
        # frames (T, 3, S, S) uint8, already resized and cropped; fbank (T, 1, F, L)
        frames, fbank = load_cached_clip(self.cache_file(clip))
        if self.transform.cfg.train:
            frames = self.transform.augment(frames, generator)
        return self.transform.normalize(frames), fbank


def register_dataset(cls: type[ClipDataset]) -> type[ClipDataset]:
    """Class decorator: register ``cls`` in ``DATASETS`` under ``cls.name``."""
    DATASETS.register(cls.name)(cls)
    return cls


def collate_av(samples: Sequence[dict[str, Any]]) -> AVBatch:
    """Stack dataset items into an :class:`AVBatch`: ``video``, ``audio`` and the tensors under ``inputs`` as
    they are; other tensor entries (``labels``, ``masks``, …) into ``targets``; ``meta`` as dict of lists."""
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
