"""The on-disk cache of decoded clips that ``avadapt prepare`` writes (:mod:`avadapt.data.prepare`).

Decoding an mp4 and computing its fbank costs far more than a training step of a frozen backbone
with small adapters, so every clip is decoded once into a small safetensors file::

    <cache>/cache.json            the settings it was built with (CacheSettings), its dataset among them
    <cache>/<clip>.safetensors    frames  uint8   (T, 3, S, S)  RGB resized and cropped (crop_mode, crop_pct)
                                  fbank   float16 (T, 1, F, L)  normalised log-mel, as segment_fbank
                                  any tensors of the dataset's own (e.g. masks); metadata "clip": JSON
    <cache>/bad_clips.tsv         video_id, path, reason of every clip that could not be decoded

One file per clip, not per annotation row (rows that share a video share its media), possibly in sub-folders
(one per split, where a clip's media depends on its split). Every file is written atomically
(``avadapt._files``), so a file with its final name is complete; a killed run leaves at worst a ``.tmp`` file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from avadapt._config import JSONConfig
from avadapt._files import replaced_atomically
from avadapt.data.fbank import FbankConfig
from avadapt.data.transforms import VideoTransform, VideoTransformConfig
from avadapt.errors import DatasetError

CACHE_FORMAT = "avadapt-clip-cache"
CACHE_VERSION = 2  # changes whenever the cached values would; caches of another version are refused
CACHE_JSON = "cache.json"
BAD_CLIPS = "bad_clips.tsv"
TMP_SUFFIX = ".tmp"  # what ``replaced_atomically`` names its temporaries with


class CacheConfigError(DatasetError):
    """A prepared cache built with settings other than the ones asked for."""


@dataclass(frozen=True)
class CacheSettings(JSONConfig):
    """Everything that decides a cached clip's content; a cache is only reused with equal settings.

    crop_pct, crop_mode: frames are resized to cover ``image_size / crop_pct`` keeping their aspect ratio
    (``"center"``) or to ``image_size / crop_pct`` square (``"squash"``), then centre-cropped (1.0: no crop);
    see :class:`~avadapt.data.transforms.VideoTransformConfig`.
    min_seconds: shortest clip accepted (see :func:`avadapt.data.media.read_clip`); None = 90 %.
    dataset: the registered dataset whose clips the cache holds, so that one is never read as another's;
    a ``cache.json`` that records none (None) may be read by any dataset.
    """

    image_size: int = 224
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    crop_mode: str = "center"
    num_segments: int = 10
    segment_seconds: float = 1.0
    min_seconds: float | None = None
    fbank: FbankConfig = field(default_factory=FbankConfig)
    dataset: str | None = field(kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.fbank, dict):  # from JSON
            object.__setattr__(self, "fbank", FbankConfig.from_dict(self.fbank))
        if self.image_size <= 0 or self.num_segments <= 0 or self.segment_seconds <= 0:
            raise ValueError(f"image_size, num_segments and segment_seconds must be positive: {self}")
        self.frame_transform()  # validates crop_pct, crop_mode and interpolation

    def frame_transform(self) -> VideoTransform:
        """The resize + centre crop that turns decoded frames into cached ones (no normalisation)."""
        return VideoTransform(VideoTransformConfig(input_size=(self.image_size, self.image_size),
                                                   crop_pct=self.crop_pct, crop_mode=self.crop_mode,
                                                   interpolation=self.interpolation))

    def to_json(self) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, **self.to_dict()}

    def write(self, cache_dir: Path) -> None:
        write_text_atomic(cache_dir / CACHE_JSON, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, cache_dir: str | Path) -> CacheSettings:
        path = Path(cache_dir) / CACHE_JSON
        if not path.is_file():
            raise DatasetError(f"{path}: not found, so {path.parent} is not a clip cache (run avadapt prepare first)")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:  # not JSON, or not UTF-8 text
            raise CacheConfigError(f"{path}: unreadable cache settings: {err}") from err
        if (not isinstance(values, dict) or values.pop("format", None) != CACHE_FORMAT
                or values.pop("version", None) != CACHE_VERSION):
            raise CacheConfigError(f"{path}: not a version-{CACHE_VERSION} {CACHE_FORMAT} file; "
                                   "run avadapt prepare again into a new folder")
        try:
            return cls.from_dict({"dataset": None, **values})
        except (TypeError, ValueError) as err:
            raise CacheConfigError(f"{path}: unreadable cache settings: {err}") from err


def check_cache_settings(path: Path, wanted: dict[str, Any]) -> CacheSettings:
    """Read ``<cache>/cache.json`` (``path``) and raise :class:`CacheConfigError` naming every ``wanted``
    setting (a subset of the fields; ``fbank`` field by field) it differs in."""
    found = CacheSettings.read(path.parent)
    differ = []
    for key, value in wanted.items():
        have = getattr(found, key)
        if isinstance(value, FbankConfig):
            for name, want in value.to_dict().items():
                if getattr(have, name) != want:
                    differ.append(f"fbank.{name}: cache {getattr(have, name)!r}, wanted {want!r}")
        elif have != value and not (key == "dataset" and have is None):
            differ.append(f"{key}: cache {have!r}, wanted {value!r}")
    if differ:
        raise CacheConfigError(f"{path}: the cache was prepared with other settings — {'; '.join(differ)}. "
                               "Prepare a new cache for these settings, or open this one with its own.")
    return found


def clip_file(cache_dir: Path, video_id: str) -> Path:
    """``<cache>/<video_id>.safetensors``; refuses ids that would escape the folder."""
    if not video_id or "/" in video_id or "\\" in video_id or video_id.startswith("."):
        raise ValueError(f"video id {video_id!r} cannot be used as a file name")
    return cache_dir / f"{video_id}.safetensors"


def save_cached_clip(path: Path, frames: torch.Tensor, fbank: torch.Tensor, info: dict[str, object],
                     extra: Mapping[str, torch.Tensor] | None = None) -> None:
    """Atomically write one clip: frames (T, 3, S, S) uint8, fbank (T, 1, F, L) stored as float16, the
    dataset's own ``extra`` tensors (e.g. masks), and ``info`` as one sorted JSON string: safetensors writes a
    metadata map of several keys in arbitrary order, so identical clips would differ byte for byte."""
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise ValueError(f"frames must be uint8 (T, 3, S, S), got {frames.dtype} {tuple(frames.shape)}")
    tensors = {"frames": frames.contiguous(), "fbank": fbank.to(torch.float16).contiguous()}
    for name, tensor in (extra or {}).items():
        if name in tensors:
            raise ValueError(f"extra tensor {name!r} would replace the clip's own")
        tensors[name] = tensor.contiguous()
    with replaced_atomically(path) as tmp:
        save_file(tensors, str(tmp), metadata={"clip": json.dumps(info, sort_keys=True)})


def load_cached_clip(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (T, 3, S, S) uint8, fbank (T, 1, F, L) float32) of one cached clip."""
    tensors = load_file(str(path))
    return tensors["frames"], tensors["fbank"].float()


def load_cached_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of one cached clip as stored (``fbank`` still float16), the dataset's extras included."""
    return load_file(str(path))


def write_text_atomic(path: Path, text: str) -> None:
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)


def remove_stale_temporaries(cache_dir: Path) -> None:
    """Delete temporary files a killed run left behind, in the cache and its sub-folders."""
    for stale in list(cache_dir.rglob(f"*{TMP_SUFFIX}")):
        stale.unlink(missing_ok=True)
