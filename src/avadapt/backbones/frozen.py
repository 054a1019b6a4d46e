"""What every backbone wrapper shares: freezing, eval mode, the memory switch, the final norm."""

from __future__ import annotations

from typing import Self

import torch
from torch import nn


class FrozenBackbone(nn.Module):
    """A timm model held frozen: ``requires_grad=False`` and eval mode whatever ``.train()`` is called with,
    unless ``set_trainable(True)`` is asked for (full fine-tuning reference).

    Subclasses build ``self.blocks`` (handles with a ``recompute_ffn`` flag) and any module of their own that
    belongs to the frozen backbone (HTS-AT's ``bn0``), then call ``self.set_trainable(False)``: every module the
    wrapper holds is frozen alike.
    """

    family: str

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model = model
        self.name = name
        self.trainable = False
        self.blocks: list = []

    def set_trainable(self, trainable: bool) -> None:
        """Freeze (or unfreeze) every module the wrapper holds: the timm model and any frozen part of its own."""
        self.trainable = trainable
        self.requires_grad_(trainable)
        for module in self.children():
            module.train(self.training and trainable)

    def set_ffn_recompute(self, enabled: bool) -> None:
        """Recompute each frozen FFN's hidden activation in backward instead of storing it.

        The hidden activation (4·D per token) is the largest tensor a block keeps for backward; recomputing
        it costs one extra fc1 + activation per block (about 6% of a ViT training step's FLOPs).
        """
        for handle in self.blocks:
            handle.recompute_ffn = enabled

    def store_frozen_weights_as(self, dtype: torch.dtype) -> int:
        """Keep frozen weights in ``dtype`` only, where the wrapper supports it (ViT); returns bytes freed."""
        return 0

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        for module in self.children():
            module.train(mode and self.trainable)
        return self

    @property
    def final_norm(self) -> nn.Module:
        return self.model.norm
