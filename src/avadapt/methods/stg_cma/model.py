"""STG-CMA over a frozen ViT (temporal embeddings, adapted blocks, trainable final norm) or Swin (``swin.py``)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from avadapt._registry import METHODS
from avadapt.backbones import Backbone
from avadapt.methods.base import AVMethod
from avadapt.methods.stg_cma.config import STGCMAConfig
from avadapt.methods.stg_cma.modules import STGCMABlock
from avadapt.methods.stg_cma.swin import build_swin_blocks


@METHODS.register("stg_cma")
class STGCMA(AVMethod):
    """Spatial-Temporal-Global Cross-Modal Adaptation (Wang et al., CVPRW 2024) on a shared frozen ViT or Swin.

    The backbone family picks the block layout: on a ViT every block gets all three steps and tokens get
    temporal embeddings; on a Swin (official Swin code, see ``swin.py``) bottlenecks are sized per stage,
    temporal steps sit in the unshifted blocks only, and there are no temporal embeddings.
    """

    config_class = STGCMAConfig

    def __init__(self, backbone: Backbone, config: STGCMAConfig):
        if backbone.family not in ("vit", "swin"):
            raise ValueError(f"STG-CMA is implemented for ViT and Swin backbones; {backbone.name} is {backbone.family}")
        super().__init__(backbone, config.branches, config.num_frames)
        self.config = config
        if backbone.family == "swin":
            self.blocks = build_swin_blocks(backbone, self.modalities, config)
        else:
            dim = backbone.embed_dim
            # Learnable per-modality temporal embeddings added to every token of segment t (zero-init).
            self.temporal_embeddings = nn.ParameterDict(
                {m: nn.Parameter(torch.zeros(1, config.num_frames, 1, dim)) for m in self.modalities})
            depth = len(backbone.blocks)
            rates = [config.drop_path * i / max(depth - 1, 1) for i in range(depth)]
            self.blocks = nn.ModuleList(
                STGCMABlock(handle, dim, self.modalities, config, rate)
                for handle, rate in zip(backbone.blocks, rates))
        # Under full fine-tuning the backbone's own final norm already trains; a copy would sit unused.
        tune_final_norm = config.tune_final_norm if config.tune_final_norm is not None else backbone.family == "vit"
        tune_copy = tune_final_norm and not config.full_finetune
        self.tuned_final_norm = copy.deepcopy(backbone.final_norm) if tune_copy else None
        if self.tuned_final_norm is not None:
            self.tuned_final_norm.requires_grad_(True)
        backbone.set_trainable(config.full_finetune)
        backbone.set_ffn_recompute(config.recompute_frozen and not config.activation_checkpointing)

    def final_norm(self, x: torch.Tensor, modality: str = "video") -> torch.Tensor:
        norm = self.tuned_final_norm if self.tuned_final_norm is not None else self.backbone.final_norm
        return norm(x)

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        if self.backbone.family == "vit":
            for m, x in tokens.items():
                x = x.view(-1, self.num_frames, *x.shape[1:]) + self.temporal_embeddings[m]  # (B, T, N, D)
                tokens[m] = self.backbone.pre_norm(x.flatten(0, 1))  # (B*T, N, D)
        recompute = self.config.activation_checkpointing and torch.is_grad_enabled()

        def adapted_block(index: int, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            block = self.blocks[index]
            return checkpoint(block, tokens, use_reentrant=False) if recompute else block(tokens)

        return self.run_blocks(tokens, adapted_block)
