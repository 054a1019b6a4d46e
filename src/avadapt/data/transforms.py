"""Video frames → the image tensors a timm backbone expects, as its data config says pretraining saw images.

Augmentation draws one set of parameters per clip for all its frames, so objects do not jump between segments
and temporal modules see motion, not crop jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from avadapt._config import JSONConfig

_INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
    "random": InterpolationMode.BILINEAR,  # timm's train-time random choice; one fixed mode here
}
# timm's data-config ``crop_mode`` values this transform implements ("border", timm's third, is not one)
CROP_MODES = ("center", "squash")


@dataclass(frozen=True)
class VideoTransformConfig(JSONConfig):
    """How frames are resized, cropped, augmented and normalised.

    The first six fields mirror a timm data config (defaults: ViT ImageNet-21k checkpoints, mean/std 0.5).
    Evaluation is timm's, by ``crop_mode``: ``"center"`` resizes the frame, keeping its aspect ratio, to cover
    ``input_size / crop_pct`` and centre-crops ``input_size``; ``"squash"`` resizes each side to
    ``input_size / crop_pct`` whatever the aspect ratio, then centre-crops, so with ``crop_pct`` 1 the whole frame
    is stretched to ``input_size`` and nothing is cut off (``Resize([S, S])`` of the LAVISH, DG-SCT and STG-CMA
    AVQA loaders). Training takes one ``RandomResizedCrop(scale, ratio)`` and one flip with probability
    ``hflip`` per clip.
    """

    input_size: tuple[int, int] = (224, 224)  # (H, W)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    crop_pct: float = 0.9
    crop_mode: str = "center"
    train: bool = False
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so configs compare equal after a round trip
        for name in ("input_size", "mean", "std", "scale", "ratio"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f"input_size must be (H, W) with positive sides, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels and std > 0, got {self.mean}, {self.std}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} is not one of {sorted(_INTERPOLATIONS)}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must lie in (0, 1], got {self.crop_pct}")
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode {self.crop_mode!r} is not one of {list(CROP_MODES)}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"bad RandomResizedCrop range scale={self.scale} ratio={self.ratio}")
        if not 0 <= self.hflip <= 1:
            raise ValueError(f"hflip is a probability, got {self.hflip}")

    @classmethod
    def from_timm(cls, data_config: dict[str, Any], **overrides: Any) -> VideoTransformConfig:
        """Build from ``timm.data.resolve_data_config(model=m)``; ``overrides`` set train/augmentation."""
        channels, height, width = data_config["input_size"]
        if channels != 3:
            raise ValueError(f"the backbone expects {channels}-channel images; video frames are RGB")
        values = {
            "input_size": (height, width),
            "mean": tuple(data_config.get("mean", cls.mean)),
            "std": tuple(data_config.get("std", cls.std)),
            "interpolation": data_config.get("interpolation", cls.interpolation),
            "crop_pct": data_config.get("crop_pct") or 1.0,
            "crop_mode": data_config.get("crop_mode") or cls.crop_mode,
        }
        values.update(overrides)
        return cls(**values)


def as_video_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3), (T, H, W, 1) or grayscale (T, H, W) uint8 → (T, 3, H, W) uint8 tensor."""
    video = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if video.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8, got {video.dtype}")
    if video.ndim == 3:
        video = video[..., None]  # grayscale (T, H, W) → (T, H, W, 1)
    if video.ndim != 4 or video.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be (T, H, W, 3), (T, H, W, 1) or (T, H, W); got {tuple(video.shape)}")
    video = video.permute(0, 3, 1, 2)  # (T, C, H, W)
    return video.expand(-1, 3, -1, -1).contiguous() if video.shape[1] == 1 else video.contiguous()


@dataclass
class VideoTransform:
    """(T, H, W, 3) uint8 frames → (T, 3, H', W') float frames normalised for the backbone."""

    cfg: VideoTransformConfig = field(default_factory=VideoTransformConfig)

    @classmethod
    def from_timm(cls, data_config: dict[str, Any], **overrides: Any) -> VideoTransform:
        return cls(VideoTransformConfig.from_timm(data_config, **overrides))

    def __call__(
        self, frames: np.ndarray | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.normalize(self.geometry(as_video_tensor(frames), generator))

    def geometry(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Resize/crop (``crop_mode``; in training, augment instead) a (T, 3, H, W) uint8 clip → (T, 3, H', W')
        uint8."""
        if self.cfg.train:
            return self.augment(video, generator)
        height, width = self.cfg.input_size
        cover_h, cover_w = math.floor(height / self.cfg.crop_pct), math.floor(width / self.cfg.crop_pct)
        if self.cfg.crop_mode == "squash":
            size = [cover_h, cover_w]  # aspect ratio not kept
        else:
            scale = max(cover_h / video.shape[-2], cover_w / video.shape[-1])
            size = [max(cover_h, round(video.shape[-2] * scale)), max(cover_w, round(video.shape[-1] * scale))]
        video = TF.resize(video, size, interpolation=_INTERPOLATIONS[self.cfg.interpolation], antialias=True)
        return TF.center_crop(video, [height, width])  # (T, 3, H', W')

    def augment(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One RandomResizedCrop and one coin flip for the whole clip (torchvision's sampling rule)."""
        in_h, in_w = video.shape[-2:]
        area = in_h * in_w
        top, left, crop_h, crop_w = 0, 0, in_h, in_w  # fallback: the whole frame
        log_ratio = (math.log(self.cfg.ratio[0]), math.log(self.cfg.ratio[1]))
        for _ in range(10):
            target = area * _uniform(*self.cfg.scale, generator)
            aspect = math.exp(_uniform(*log_ratio, generator))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= in_w and 0 < h <= in_h:
                top = int(torch.randint(0, in_h - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, in_w - w + 1, (1,), generator=generator))
                crop_h, crop_w = h, w
                break
        video = TF.resized_crop(
            video,
            top,
            left,
            crop_h,
            crop_w,
            list(self.cfg.input_size),
            interpolation=_INTERPOLATIONS[self.cfg.interpolation],
            antialias=True,
        )
        if _uniform(0.0, 1.0, generator) < self.cfg.hflip:
            video = video.flip(-1)
        return video

    def normalize(self, video: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) uint8 → float32 ``(x / 255 − mean) / std`` per channel."""
        mean = torch.tensor(self.cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (video.float() / 255.0 - mean) / std


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))
