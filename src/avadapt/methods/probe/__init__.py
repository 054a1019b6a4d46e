"""Reference without adapters: the frozen backbone as is (linear/MLP probe), or fully fine-tuned."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avadapt._config import JSONConfig
from avadapt._registry import METHODS
from avadapt.backbones import Backbone
from avadapt.methods.base import AVMethod, backbone_stages, map_taps, run_frozen_block


@dataclass
class ProbeConfig(JSONConfig):
    """num_frames: segments per clip. branches: audio_visual | audio_only | visual_only.
    full_finetune: train every backbone weight (the upper reference of the papers' tables)."""

    num_frames: int = 10
    branches: str = "audio_visual"
    full_finetune: bool = False


@METHODS.register("probe")
class Probe(AVMethod):
    """Each modality runs through the unmodified timm blocks (and Swin's patch merging) of its encoder; only the
    head trains.

    With ``audio_backbone`` (an HTS-AT beside the visual backbone, as DG-SCT has) audio runs through that encoder
    instead, and its per-segment vector is the mean of its final-norm tokens: DG-SCT's features without its
    adapters and guidance, so the probe is the comparison that shows what the adapters add.
    """

    config_class = ProbeConfig
    accepts_audio_backbone = True

    def __init__(self, backbone: Backbone, config: ProbeConfig, audio_backbone: Backbone | None = None):
        super().__init__(backbone, config.branches, config.num_frames, audio_backbone=audio_backbone)
        self.config = config
        backbone.set_trainable(config.full_finetune)
        if self.audio_encoder is not None:
            self.audio_encoder.set_trainable(config.full_finetune)

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        tokens = {m: self.encoder(m).pre_norm(x) for m, x in tokens.items()}
        if self.audio_encoder is None:
            def frozen_block(index: int, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                return {m: run_frozen_block(self.backbone.blocks[index], x) for m, x in streams.items()}

            return self.run_blocks(tokens, frozen_block)
        return {m: self._frozen_stages(self.encoder(m), x) for m, x in tokens.items()}

    @staticmethod
    def _frozen_stages(encoder: Backbone, x: torch.Tensor) -> list[torch.Tensor]:
        """One modality through every block of its own encoder; the token maps at :func:`map_taps` of that
        encoder, (B·T, [1 +] N_s, D_s), the last one before the final norm."""
        taps = map_taps(encoder)
        maps: list[torch.Tensor] = []
        index = 0
        for stage in backbone_stages(encoder):
            if stage.downsample is not None:
                x = stage.downsample(x)  # (B*T, N_s, D_s)
            for block in stage.blocks:
                x = run_frozen_block(block, x)
                maps.extend([x] * taps.count(index))
                index += 1
        return maps
