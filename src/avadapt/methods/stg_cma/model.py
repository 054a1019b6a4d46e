"""STG-CMA over a frozen ViT: temporal embeddings, adapted blocks, trainable final norm."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from avadapt._registry import METHODS
from avadapt.backbones import ViTBackbone
from avadapt.methods.base import AVMethod
from avadapt.methods.stg_cma.config import STGCMAConfig
from avadapt.methods.stg_cma.modules import STGCMABlock


@METHODS.register("stg_cma")
class STGCMA(AVMethod):
    """Spatial-Temporal-Global Cross-Modal Adaptation (Wang et al., CVPRW 2024) on a shared frozen ViT."""

    config_class = STGCMAConfig

    def __init__(self, backbone: ViTBackbone, config: STGCMAConfig):
        if backbone.family != "vit":
            raise ValueError(f"STG-CMA is implemented for ViT backbones; {backbone.name} is {backbone.family}")
        super().__init__(backbone, config.branches, config.num_frames)
        self.config = config
        dim = backbone.embed_dim
        # Learnable per-modality temporal embeddings added to every token of segment t (zero-init).
        self.temporal_embeddings = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(1, config.num_frames, 1, dim)) for m in self.modalities})
        depth = len(backbone.blocks)
        rates = [config.drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            STGCMABlock(handle, dim, self.modalities, config, rate) for handle, rate in zip(backbone.blocks, rates))
        # Under full fine-tuning the backbone's own final norm already trains; a copy would sit unused.
        tune_copy = config.tune_final_norm and not config.full_finetune
        self.tuned_final_norm = copy.deepcopy(backbone.final_norm) if tune_copy else None
        if self.tuned_final_norm is not None:
            self.tuned_final_norm.requires_grad_(True)
        backbone.set_trainable(config.full_finetune)

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.tuned_final_norm if self.tuned_final_norm is not None else self.backbone.final_norm
        return norm(x)

    def encode(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for m, x in tokens.items():
            x = x.view(-1, self.num_frames, *x.shape[1:]) + self.temporal_embeddings[m]  # (B, T, N, D)
            tokens[m] = self.backbone.pre_norm(x.flatten(0, 1))  # (B*T, N, D)
        recompute = self.config.activation_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            tokens = checkpoint(block, tokens, use_reentrant=False) if recompute else block(tokens)
        return tokens
