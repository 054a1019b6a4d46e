"""AVSBench S4 and MS3 clips as dataset items: frames, fbank images and binary masks, read from the native
layout (:mod:`avadapt.tasks.avs.metadata`) or from a prepared cache.

Masks are binarised with ``> 0`` (robust to 0/1, 0/255 and palette encodings); a mask with more than two
distinct pixel values is refused rather than thresholded, since anti-aliased or JPEG-damaged masks would
silently grow or shrink objects. Masks take the frames' evaluation geometry with nearest-neighbour resizing,
so they stay aligned and binary. Audio: the 5 s wav cut into 5 windows placed as the audio front end says
(``FbankConfig.window_placement``; the STG-CMA and LAVISH AVS front ends spread them over the clip as their
loaders do, 1.95 s windows from ``linspace(0, 5 s − 2.05 s, 5)`` for STG-CMA).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from avadapt.data.base import ClipDataset, register_dataset, seeded
from avadapt.data.cache import clip_file, load_cached_tensors
from avadapt.data.fbank import FbankConfig, segment_fbank
from avadapt.data.media import read_audio
from avadapt.data.transforms import VideoTransform, VideoTransformConfig, as_video_tensor
from avadapt.errors import MediaError
from avadapt.tasks.avs.metadata import (
    AVS_SEGMENTS,
    AVS_SETTINGS,
    AVSMedia,
    metadata_path,
    read_avs_metadata,
)

# Shortest wav accepted: 90 % of the clip, as read_clip's default for AVE; shorter ones are usually broken.
MIN_AUDIO_SECONDS = 0.9 * AVS_SEGMENTS


def _open_image(path: Path) -> Image.Image:
    """A fully decoded image; :class:`~avadapt.errors.MediaError` for a missing, empty or undecodable file."""
    if not path.is_file():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            return image.copy()  # decoded in full; the file is closed
    except OSError as err:  # an unknown format (PIL's UnidentifiedImageError), truncated or corrupt pixel data
        raise MediaError(path, f"cannot decode image: {err}") from err


def read_frames(paths: Sequence[Path]) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames from image files of one size."""
    frames = []
    for path in paths:
        with _open_image(path) as image:
            frames.append(np.asarray(image.convert("RGB")))
    if len({f.shape for f in frames}) != 1:
        sizes = ", ".join(f"{p.name}: {f.shape[1]}×{f.shape[0]}" for p, f in zip(paths, frames, strict=True))
        raise MediaError(paths[0].parent, f"frames differ in size ({sizes})")
    return np.stack(frames)


def read_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 in {0, 1}: ``pixel > 0`` of a binary mask image (any mode; alpha ignored)."""
    with _open_image(path) as image:
        values = np.asarray(image)
        if image.mode in ("LA", "PA", "RGBA"):
            values = values[..., :-1]  # drop alpha
    pixels = values.reshape(values.shape[0] * values.shape[1], -1)  # (H·W, channels)
    levels = np.unique(pixels, axis=0)
    if len(levels) > 2:
        raise MediaError(path, f"not a binary mask: {len(levels)} distinct pixel values (at most 2 expected; "
                               "foreground is every value > 0)")
    return (pixels > 0).any(axis=1).reshape(values.shape[:2]).astype(np.uint8)


def read_masks(media: AVSMedia, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W) uint8 in {0, 1}: each annotated frame's mask, zeros for the others; every mask must have the
    frames' ``size`` (H, W)."""
    masks = np.zeros((len(media.masks), *size), np.uint8)
    for t, path in enumerate(media.masks):
        if path is None:
            continue
        mask = read_mask(path)
        if mask.shape != size:
            raise MediaError(path, f"mask is {mask.shape[1]}×{mask.shape[0]} but its frame "
                                   f"{media.frames[t].name} is {size[1]}×{size[0]}")
        masks[t] = mask
    return masks


def read_wave(path: Path, sample_rate: int) -> np.ndarray:
    """The clip's 5 s of mono audio at ``sample_rate``, cut or padded with silence; shorter than
    :data:`MIN_AUDIO_SECONDS` is a :class:`~avadapt.errors.MediaError`."""
    audio = read_audio(path, sample_rate)
    if len(audio) < MIN_AUDIO_SECONDS * sample_rate:
        raise MediaError(path, f"too short: {len(audio) / sample_rate:.2f} s of audio, at least "
                               f"{MIN_AUDIO_SECONDS:.2f} s needed for {AVS_SEGMENTS} segments of 1 s")
    wave = np.zeros(AVS_SEGMENTS * sample_rate, np.float32)
    wave[: len(audio)] = audio[: len(wave)]
    return wave


def decode_clip(media: AVSMedia, cfg: VideoTransformConfig, fbank: FbankConfig) -> dict[str, torch.Tensor]:
    """One clip's files as the tensors its cache file holds, through ``cfg``'s evaluation geometry (never its
    training crop, which the masks must follow exactly); a bad file is a :class:`~avadapt.errors.MediaError`."""
    frame_geometry = VideoTransform(dataclasses.replace(cfg, train=False))
    mask_geometry = VideoTransform(dataclasses.replace(cfg, train=False, interpolation="nearest"))
    frames = read_frames(media.frames)  # (T, H, W, 3)
    masks = read_masks(media, frames.shape[1:3])  # (T, H, W)
    wave = read_wave(media.wav, fbank.sample_rate)
    return {
        "frames": frame_geometry.geometry(as_video_tensor(frames)),  # (T, 3, S, S)
        "fbank": segment_fbank(wave, fbank, AVS_SEGMENTS, 1.0),  # (T, 1, F, L)
        "masks": mask_geometry.geometry(torch.from_numpy(masks)[:, None])[:, 0],  # (T, S, S)
        "annotated": torch.tensor([mask is not None for mask in media.masks], dtype=torch.uint8),  # (T,)
    }


class AVSDataset(ClipDataset):
    """AVSBench clips of one split, each read as 5 frames, 5 fbank images and 5 masks; use the registered
    subclasses :class:`S4Dataset` (``avs_s4``) and :class:`MS3Dataset` (``avs_ms3``). Frames without a
    ground-truth mask (S4 train: frames 2–5) have ``annotated`` False and an all-zero mask.

    source: ``"native"`` (the layout of :mod:`avadapt.tasks.avs.metadata`), ``"cache"`` (from
    :func:`~avadapt.tasks.avs.prepare.prepare_avs`) or ``"auto"``, as the other options
    :class:`~avadapt.data.base.ClipDataset`'s. augment: one horizontal flip with probability 0.5 per clip, of
    frames and masks together (none of the reference loaders flips; their configs set ``augment: false``). metadata: the csv listing the clips (relative to ``root`` or absolute): the
    setting's native csv by default, or AVSBench-semantic's ``metadata.csv``.
    """

    task = "avs"
    num_segments = AVS_SEGMENTS
    layouts: ClassVar[dict[str, tuple[str, ...]]] = {"native": ()}
    clip_noun = item_noun = "clip"
    setting: ClassVar[str]
    flip_probability: ClassVar[float] = 0.5

    @classmethod
    def prepare(cls, root: str | Path, out: str | Path, **settings: Any) -> Any:
        from avadapt.tasks.avs.prepare import prepare_avs

        return prepare_avs(root, out, setting=cls.setting, **settings)

    @classmethod
    def synthesize(cls, out: str | Path, clips: int, seed: int, num_classes: int | None = None) -> Any:
        from avadapt.tasks.avs.synth import synthesize_avs

        return synthesize_avs(out, clips=clips, seed=seed, setting=cls.setting, num_classes=num_classes)

    def __init__(self, root: str | Path, split: str = "train", *, source: str = "auto",
                 metadata: str | Path | None = None, **common: Any):
        if getattr(type(self), "setting", None) not in AVS_SETTINGS:
            raise TypeError(f"{type(self).__name__} names no AVSBench setting; use S4Dataset or MS3Dataset")
        super().__init__(root, split, **common)
        self.metadata = metadata_path(self.root, self.setting, metadata)
        clips = [c for c in read_avs_metadata(self.metadata, self.setting) if c.split == split]
        self._by_name = {clip.name: clip for clip in clips}
        self.clips = self.keep_with_media(source, clips, lambda clip: clip.name)

    def cache_file(self, name: str) -> Path:
        """``<cache_dir>/<split>/<name>.safetensors``."""
        return clip_file(self.cache_dir / self.split, name)

    def media_paths(self, name: str) -> list[Path]:
        return AVSMedia.of(self.media_root, self.setting, self._by_name[name]).paths()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, _, generator = seeded(key)
        clip = self.clips[index]
        if self.source == "native":
            tensors = decode_clip(AVSMedia.of(self.media_root, self.setting, clip), self.transform.cfg, self.fbank)
        else:
            tensors = load_cached_tensors(self.cache_file(clip.name))
        frames, masks = tensors["frames"], tensors["masks"]
        if self.augment and float(torch.rand((), generator=generator)) < self.flip_probability:
            frames, masks = frames.flip(-1), masks.flip(-1)  # (…, W): mirrored together
        return {
            "video": self.transform.normalize(frames),  # (T, 3, H, W)
            "audio": tensors["fbank"].float(),  # (T, 1, F, L)
            "masks": masks.float(),  # (T, H, W)
            "annotated": tensors["annotated"].bool(),  # (T,)
            "meta": {"video_id": clip.name, "category": clip.category, "split": clip.split},
        }


@register_dataset
class S4Dataset(AVSDataset):
    """AVSBench S4: one sounding object per clip, 23 categories; S4 train annotates only the first frame."""

    name = "avs_s4"
    setting = "s4"
    title = "AVSBench S4"


@register_dataset
class MS3Dataset(AVSDataset):
    """AVSBench MS3: several sounding objects per clip; all 5 frames annotated in every split."""

    name = "avs_ms3"
    setting = "ms3"
    title = "AVSBench MS3"
