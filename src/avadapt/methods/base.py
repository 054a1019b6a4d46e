"""What every method shares: the two token streams in, per-segment features out."""

from __future__ import annotations

import torch
from torch import nn

from avadapt.backbones import ViTBackbone
from avadapt.types import AVFeatures

BRANCHES = {"audio_visual": ("video", "audio"), "audio_only": ("audio",), "visual_only": ("video",)}


class AVMethod(nn.Module):
    """Base class: embeds video frames and spectrogram segments with the shared frozen backbone.

    Subclasses implement ``encode(tokens)`` over the block handles; tokens are a dict
    ``{"video": (B·T, 1 + Nv, D), "audio": (B·T, 1 + Na, D)}`` holding only the active branches.
    """

    config_class: type

    def __init__(self, backbone: ViTBackbone, branches: str, num_frames: int):
        super().__init__()
        if branches not in BRANCHES:
            raise ValueError(f"branches must be one of {sorted(BRANCHES)}, got {branches!r}")
        self.backbone = backbone
        self.modalities: tuple[str, ...] = BRANCHES[branches]
        self.num_frames = num_frames

    @property
    def feature_dim(self) -> int:
        return self.backbone.embed_dim

    def embed(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """(B, T, 3, H, W) and (B, T, 1, F, L) → tokens per active modality, (B·T, 1 + N, D), before pre-norm."""
        inputs = {"video": video, "audio": audio}
        tokens = {}
        for modality in self.modalities:
            x = inputs[modality]
            if x is None:
                raise ValueError(f"this model uses the {modality} branch but no {modality} tensor was given")
            if x.dim() != 5 or x.shape[1] != self.num_frames:
                raise ValueError(f"{modality} must be (B, T={self.num_frames}, C, H, W), got {tuple(x.shape)}")
            segments = x.flatten(0, 1)  # (B*T, C, H, W)
            embed = self.backbone.video_tokens if modality == "video" else self.backbone.audio_tokens
            tokens[modality] = embed(segments)
        return tokens

    def encode(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.final_norm(x)

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> AVFeatures:
        tokens = self.encode(self.embed(video, audio))
        out: dict[str, torch.Tensor | None] = {"video": None, "audio": None}
        maps: dict[str, list[torch.Tensor]] = {"video": [], "audio": []}
        for modality, x in tokens.items():
            x = self.final_norm(x)
            x = x.view(-1, self.num_frames, *x.shape[1:])  # (B, T, 1 + N, D)
            out[modality] = x[:, :, 0]  # (B, T, D) class token per segment
            maps[modality] = [x[:, :, 1:]]  # (B, T, N, D)
        return AVFeatures(out["video"], out["audio"], maps["video"], maps["audio"])
