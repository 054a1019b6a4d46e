"""What every method shares: the two token streams in, per-segment features out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from avadapt.backbones import AudioEmbeddingConfig, Backbone
from avadapt.types import AVFeatures, FeatureSpec, ParameterGroup

BRANCHES = {"audio_visual": ("video", "audio"), "audio_only": ("audio",), "visual_only": ("video",)}


@dataclass
class StageView:
    """Blocks that share one token grid, and the frozen patch merging that opens the stage (None: no merging).

    A ViT is one stage; a Swin has four. Methods written over stages run on both families.
    """

    blocks: list
    downsample: Callable[[torch.Tensor], torch.Tensor] | None = None


def backbone_stages(backbone: Backbone) -> list[StageView]:
    if backbone.family == "vit":
        return [StageView(list(backbone.blocks))]
    return [StageView(stage.blocks, stage.downsample if stage.has_downsample else None) for stage in backbone.stages]


def block_width(backbone: Backbone, handle) -> int:
    """Channel width of the tokens a block handle sees (constant for a ViT, per stage for a Swin)."""
    return getattr(handle, "dim", backbone.embed_dim)


def run_frozen_block(handle, x: torch.Tensor) -> torch.Tensor:
    """The unmodified timm block on (S, N, D) tokens, whatever the family."""
    return handle.run(x) if hasattr(handle, "run") else handle.block(x)


class AVMethod(nn.Module):
    """Base class: embeds video frames and spectrogram segments with the shared frozen backbone.

    Subclasses implement ``encode(tokens)`` over the block handles; tokens are a dict
    ``{"video": (B·T, 1 + Nv, D), "audio": (B·T, 1 + Na, D)}`` holding only the active branches (a Swin
    has no class token: (B·T, N, D)). Hierarchical backbones override ``encode_stages`` instead, to hand
    every stage's token map to dense heads.
    """

    config_class: type

    def __init__(self, backbone: Backbone, branches: str, num_frames: int):
        super().__init__()
        if branches not in BRANCHES:
            raise ValueError(f"branches must be one of {sorted(BRANCHES)}, got {branches!r}")
        self.backbone = backbone
        self.modalities: tuple[str, ...] = BRANCHES[branches]
        self.num_frames = num_frames

    @property
    def feature_dim(self) -> int:
        return self.backbone.embed_dim

    def feature_spec(self) -> FeatureSpec:
        """What :meth:`forward` hands to a task head (widths and strides of the token maps included)."""
        backbone = self.backbone
        patch = backbone.patch_size[0]
        if backbone.family == "vit":
            dims, strides = (backbone.embed_dim,), (patch,)
            image_size = tuple(backbone.data_config["input_size"][1:])
        else:
            dims = tuple(backbone.stage_dims)
            strides = tuple(patch * 2 ** i for i in range(len(dims)))
            image_size = tuple(backbone.image_size)
        return FeatureSpec(dim=self.feature_dim, modalities=self.modalities, num_segments=self.num_frames,
                           map_dims=dims, map_strides=strides, image_size=image_size, family=backbone.family)

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

    @classmethod
    def default_audio(cls, backbone: Backbone) -> AudioEmbeddingConfig | None:
        """The audio embedding this method's paper uses on ``backbone``, or None for the backbone's default.

        ``create_model`` applies it only when the caller did not pass an audio config of their own.
        """
        return None

    def parameter_groups(self) -> list[ParameterGroup]:
        """The method's trainable parameters (backbone weights included when fine-tuned), grouped by learning
        rate relative to the training's base lr: one group at the base lr unless a method's recipe differs."""
        return [ParameterGroup("method", [p for p in self.parameters() if p.requires_grad])]

    def encode(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Per modality, the token map after each stage, (B·T, N_s, D_s), the last one before the final norm."""
        return {m: [x] for m, x in self.encode(tokens).items()}

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.final_norm(x)

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> AVFeatures:
        """Per-segment features: the class token after the final norm (ViT), or the final norm averaged over
        tokens (Swin: its ImageNet head's pooling, used by STG-CMA and LAVISH); token maps per stage."""
        stages = self.encode_stages(self.embed(video, audio))
        out: dict[str, torch.Tensor | None] = {"video": None, "audio": None}
        maps: dict[str, list[torch.Tensor]] = {"video": [], "audio": []}
        for modality, stage_maps in stages.items():
            x = self.final_norm(stage_maps[-1])
            x = x.view(-1, self.num_frames, *x.shape[1:])  # (B, T, [1 +] N, D)
            if self.backbone.family == "vit":
                out[modality] = x[:, :, 0]  # (B, T, D) class token per segment
                maps[modality] = [x[:, :, 1:]]  # (B, T, N, D)
            else:
                out[modality] = x.mean(2)  # (B, T, D) average over tokens
                earlier = [m.view(-1, self.num_frames, *m.shape[1:]) for m in stage_maps[:-1]]  # (B, T, N_s, D_s)
                maps[modality] = [*earlier, x]
        return AVFeatures(out["video"], out["audio"], maps["video"], maps["audio"])
