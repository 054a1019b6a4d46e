"""Reference without adapters: the frozen backbone as is (linear/MLP probe), or fully fine-tuned."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avadapt._config import JSONConfig
from avadapt._registry import METHODS
from avadapt.backbones import Backbone
from avadapt.methods.base import AVMethod, backbone_stages, run_frozen_block


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
        out = {}
        for modality, x in tokens.items():
            x = self.backbone.pre_norm(x)
            maps = []
            for stage in backbone_stages(self.backbone):
                if stage.downsample is not None:
                    x = stage.downsample(x)
                for handle in stage.blocks:
                    x = run_frozen_block(handle, x)
                maps.append(x)
            out[modality] = maps
        return out
