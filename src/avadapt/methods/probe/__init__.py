"""Reference without adapters: the frozen backbone as is (linear/MLP probe), or fully fine-tuned."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avadapt._config import JSONConfig
from avadapt._registry import METHODS
from avadapt.backbones import Backbone
from avadapt.methods.base import AVMethod, run_frozen_block


@dataclass
class ProbeConfig(JSONConfig):
    """num_frames: segments per clip. branches: audio_visual | audio_only | visual_only.
    full_finetune: train every backbone weight (the upper reference of the papers' tables)."""

    num_frames: int = 10
    branches: str = "audio_visual"
    full_finetune: bool = False


@METHODS.register("probe")
class Probe(AVMethod):
    """Each modality runs through the unmodified timm blocks (and Swin's patch merging); only the head trains."""

    config_class = ProbeConfig

    def __init__(self, backbone: Backbone, config: ProbeConfig):
        super().__init__(backbone, config.branches, config.num_frames)
        self.config = config
        backbone.set_trainable(config.full_finetune)

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        tokens = {m: self.backbone.pre_norm(x) for m, x in tokens.items()}

        def frozen_block(index: int, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {m: run_frozen_block(self.backbone.blocks[index], x) for m, x in streams.items()}

        return self.run_blocks(tokens, frozen_block)
