"""Audio-visual event localisation (AVE): one of 28 events or background for every 1 s segment."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avadapt._config import JSONConfig
from avadapt._registry import TASKS
from avadapt.types import AVFeatures

BACKGROUND_CLASSES = 1


@dataclass
class AVEConfig(JSONConfig):
    """Head of STG-CMA's AVE code: concat[audio; video] → Linear 512 → Dropout 0.5 → Linear 29, per segment.

    num_classes counts the background class (28 events + 1 for AVE).
    """

    num_classes: int = 29
    hidden_dim: int = 512
    dropout: float = 0.5

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"AVE needs at least one event class plus background, got {self.num_classes}")


@TASKS.register("ave")
class AVEHead(nn.Module):
    """Per-segment classifier over the concatenated per-segment features of the active modalities."""

    config_class = AVEConfig

    def __init__(self, feature_dim: int, modalities: tuple[str, ...], config: AVEConfig):
        super().__init__()
        self.config = config
        self.modalities = tuple(m for m in ("audio", "video") if m in modalities)  # concat order: audio, video
        self.classifier = nn.Sequential(
            nn.Linear(feature_dim * len(self.modalities), config.hidden_dim),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, config.num_classes),
        )

    def forward(self, features: AVFeatures) -> torch.Tensor:
        """→ (B, T, num_classes) logits."""
        x = torch.cat([getattr(features, m) for m in self.modalities], dim=-1)  # (B, T, D * n_modalities)
        return self.classifier(x)

    def loss(self, logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy over all segments (the official code's CE with one-hot targets)."""
        return F.cross_entropy(logits.flatten(0, 1).float(), targets["labels"].flatten())
