"""LAVISH over a frozen backbone shared by audio and video (Swin-V2-L in the paper; Swin v1 and ViT too)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from avadapt._registry import METHODS
from avadapt.backbones import AudioEmbeddingConfig, Backbone
from avadapt.methods.base import AVMethod, backbone_stages, block_width
from avadapt.methods.lavish.config import LAVISHConfig
from avadapt.methods.lavish.modules import LAVISHBlock, backbone_layer_norms


@METHODS.register("lavish")
class LAVISH(AVMethod):
    """LAVISH (Lin et al., "Vision Transformers are Parameter-Efficient Audio-Visual Learners", CVPR 2023).

    Every frozen block gets four LAVISH adapters (``LAVISHBlock``); patch merging and the final norm stay
    frozen. Features are the final norm averaged over tokens on Swin (the official AVE head's input) and the
    final-norm class token on a ViT. The official AVE head — Linear 3072→512 → Linear 512→29 on
    concat[v; a] — has exactly the parameters of our shared AVE head (its Dropout has none): with
    ``dropout=0`` it is the same function.

    Count with the AVE preset: one adapter of width D has m·D latent tokens, two grouped 1×1 convolutions of
    D·(D/8)/2 weights each (= D²/8), BatchNorms of 2·D/8 and 2·D, LayerNorms of 2·D and 2·D, and two scalar
    gates: D²/8 + (m + 6)·D + D/4 + 2; with m = 2 that is 6,194 / 21,602 / 80,066 / 307,586 for D = 192 / 384 / 768 /
    1536. Four adapters in each of 2 / 2 / 18 / 2 blocks: 8,447,808; with the head (3072·512 + 512 + 512·29
    + 29 = 1,588,253) 10,036,061 trainable parameters on Swin-V2-L/192 (the official code's 10.04M).
    """

    config_class = LAVISHConfig

    def __init__(self, backbone: Backbone, config: LAVISHConfig):
        super().__init__(backbone, config.branches, config.num_frames)
        self.config = config
        handles = [handle for stage in backbone_stages(backbone) for handle in stage.blocks]
        rates = [config.backbone_drop_path * i / max(len(handles) - 1, 1) for i in range(len(handles))]  # as timm
        self.blocks = nn.ModuleList(
            LAVISHBlock(handle, block_width(backbone, handle), self.modalities, config, rate)
            for handle, rate in zip(handles, rates))
        backbone.set_trainable(config.full_finetune)
        if config.tune_backbone_norms:
            for norm in backbone_layer_norms(backbone):
                norm.requires_grad_(True)

    @classmethod
    def default_audio(cls, backbone: Backbone) -> AudioEmbeddingConfig | None:
        """On Swin the spectrogram is tiled to 3 channels through the unchanged RGB patch embedding, which is the
        one-channel convolution with the RGB kernel *summed*; ViTs already default to that."""
        if backbone.family != "swin":
            return None
        return dataclasses.replace(backbone.audio, kernel_reduction="sum")

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        tokens = {m: self.backbone.pre_norm(x) for m, x in tokens.items()}
        return self.run_blocks(tokens, lambda index, streams: self.blocks[index](streams))
