"""What every method shares: two token streams in; per-segment features and multi-scale token maps out."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

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


VIT_MAP_COUNT = 4  # one map per quarter of the depth: the four scales of a feature pyramid (ViTDet, DPT)


def vit_map_taps(depth: int, count: int = VIT_MAP_COUNT) -> tuple[int, ...]:
    """Indices of the ViT blocks whose outputs are the token maps for dense heads: the output after
    ⌈k · depth / count⌉ blocks, k = 1 … count, each tap at or just past its fraction of the depth.

    Depth 12 → blocks 3, 6, 9, 12 (indices 2, 5, 8, 11: DPT's taps on ViT-B); 24 → indices 5, 11, 17, 23;
    6 → 1, 2, 4, 5. A ViT with fewer blocks than maps repeats blocks so that a head always gets ``count``
    maps: depth 2 → 0, 0, 1, 1; depth 1 → 0, 0, 0, 0. The last tap is always the last block.
    """
    if depth < 1:
        raise ValueError(f"a ViT needs at least one block, got depth {depth}")
    return tuple(-(-k * depth // count) - 1 for k in range(1, count + 1))


def map_taps(backbone: Backbone) -> tuple[int, ...]:
    """Indices, over all blocks in order, of the blocks after which a token map is kept for dense heads: the
    quarter depths of a ViT (:func:`vit_map_taps`), the last block of each Swin stage (before the next stage's
    patch merging). An index listed twice gives two entries."""
    if backbone.family == "vit":
        return vit_map_taps(len(backbone.blocks))
    ends = itertools.accumulate(len(stage.blocks) for stage in backbone_stages(backbone))
    return tuple(end - 1 for end in ends)


def block_width(backbone: Backbone, handle) -> int:
    """Channel width of the tokens a block handle sees (constant for a ViT, per stage for a Swin)."""
    return getattr(handle, "dim", backbone.embed_dim)


def run_frozen_block(handle, x: torch.Tensor) -> torch.Tensor:
    """The unmodified timm block on (S, N, D) tokens, whatever the family."""
    return handle.run(x) if hasattr(handle, "run") else handle.block(x)


def map_layout(backbone: Backbone) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]:
    """(widths, strides, input size) of the token maps :func:`map_taps` keeps on ``backbone``."""
    if backbone.family == "vit":
        count = len(map_taps(backbone))
        return ((backbone.embed_dim,) * count, (backbone.patch_size[0],) * count,
                tuple(backbone.data_config["input_size"][1:]))
    image_size = tuple(backbone.image_size)
    strides = tuple(image_size[0] // stage.grid[0] for stage in backbone.stages)  # 4, 8, 16, 32
    return tuple(backbone.stage_dims), strides, image_size


class AVMethod(nn.Module):
    """Base class: embeds video frames and spectrogram segments with the frozen backbone(s).

    Subclasses implement ``encode_stages(tokens)``; tokens are a dict
    ``{"video": (B·T, 1 + Nv, D), "audio": (B·T, 1 + Na, D)}`` holding only the active branches (a Swin
    has no class token: (B·T, N, D)). They run their blocks through :meth:`run_blocks`, which walks the
    backbone's stages and keeps the token maps dense heads get (:func:`map_taps`), the same for every method.

    Audio and video share ``backbone`` unless the method declares ``accepts_audio_backbone`` and is given an
    ``audio_backbone`` of its own (DG-SCT: HTS-AT beside Swin-V2); :meth:`encoder` names the one each
    modality goes through. A separate audio encoder is a frozen submodule (``audio_encoder``) like the backbone.
    """

    config_class: type
    accepts_audio_backbone: bool = False
    """Whether the constructor takes ``audio_backbone=``: an audio encoder other than the visual backbone."""
    paper_audio_backbone: tuple[str, dict] | None = None
    """(name, options) of ``backbones.create_audio_backbone`` for the paper's audio encoder, used when counting
    parameters of the paper's configuration (``avadapt params``); None: the paper shares one backbone."""
    paper_audio_front_end: ClassVar[str | None] = None
    """The audio front end (``avadapt.audio_front_ends``) of a method whose paper gives it an audio encoder of
    its own, for every backbone and every task that names none for the method (``Task.paper_audio_front_ends``);
    None: the task's or the backbone family's (``models.paper_audio_front_end``)."""
    paper_task_options: ClassVar[dict[str, dict]] = {}
    """Per task, the options of the task's config the paper sets for this method (DG-SCT on AVE: the CMBS head);
    ``create_model`` applies them unless the caller gives the option."""
    final_norm_modalities: tuple[str, ...] = ("video", "audio")
    """The modalities whose last tokens pass the encoder's final norm before they are pooled into per-segment
    vectors (:meth:`features_from`); DG-SCT pools the tokens of its own audio encoder without it, as its official
    code does."""

    def __init__(self, backbone: Backbone, branches: str, num_frames: int, audio_backbone: Backbone | None = None):
        super().__init__()
        if branches not in BRANCHES:
            raise ValueError(f"branches must be one of {sorted(BRANCHES)}, got {branches!r}")
        self.backbone = backbone
        separate = audio_backbone is not None and audio_backbone is not backbone
        self.audio_encoder: Backbone | None = audio_backbone if separate else None
        self.modalities: tuple[str, ...] = BRANCHES[branches]
        self.num_frames = num_frames

    @property
    def audio_backbone(self) -> Backbone:
        """The encoder of the audio stream: a separate one where given, else the shared backbone."""
        return self.audio_encoder if self.audio_encoder is not None else self.backbone

    def encoder(self, modality: str) -> Backbone:
        return self.audio_backbone if modality == "audio" else self.backbone

    @property
    def feature_dim(self) -> int:
        return self.backbone.embed_dim

    @property
    def audio_feature_dim(self) -> int:
        return self.audio_backbone.embed_dim

    def feature_spec(self) -> FeatureSpec:
        """What :meth:`forward` hands to a task head (widths and strides of the token maps included; the audio
        side's own where a separate audio encoder has other widths)."""
        dims, strides, image_size = map_layout(self.backbone)
        audio_dims, audio_strides, _ = map_layout(self.audio_backbone)
        return FeatureSpec(dim=self.feature_dim, modalities=self.modalities, num_segments=self.num_frames,
                           map_dims=dims, map_strides=strides, image_size=image_size, family=self.backbone.family,
                           audio_dim=self.audio_feature_dim, audio_map_dims=audio_dims,
                           audio_map_strides=audio_strides)

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
            embed = self.backbone.video_tokens if modality == "video" else self.audio_backbone.audio_tokens
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

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Per modality, the token maps of :func:`map_taps`, (B·T, [1 +] N_s, D_s) (class token still in on a
        ViT), the last one the backbone's output before the final norm. Tokens come from :meth:`embed`."""
        raise NotImplementedError

    def run_blocks(self, tokens: dict[str, torch.Tensor],
                   step: Callable[[int, dict[str, torch.Tensor]], dict[str, torch.Tensor]],
                   ) -> dict[str, list[torch.Tensor]]:
        """The block loop every method shares: ``step(i, tokens) → tokens`` runs block i (counted over all
        stages) on every modality; Swin's frozen patch merging runs between stages. Returns per modality the
        tokens after each block of :func:`map_taps`, the tensors themselves (no copy): what
        :meth:`encode_stages` returns. tokens: (B·T, [1 +] N, D) per modality, after the pre-norm."""
        taps = map_taps(self.backbone)
        maps: dict[str, list[torch.Tensor]] = {m: [] for m in tokens}
        index = 0
        for stage in backbone_stages(self.backbone):
            if stage.downsample is not None:
                tokens = {m: stage.downsample(x) for m, x in tokens.items()}  # (B*T, N_s, D_s)
            for _ in stage.blocks:
                tokens = step(index, tokens)
                for m, x in tokens.items():
                    maps[m].extend([x] * taps.count(index))
                index += 1
        return maps

    def final_norm(self, x: torch.Tensor, modality: str = "video") -> torch.Tensor:
        return self.encoder(modality).final_norm(x)

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> AVFeatures:
        """Per-segment features and token maps of :meth:`features_from` for the stages :meth:`encode_stages`
        returns."""
        return self.features_from(self.encode_stages(self.embed(video, audio)))

    def features_from(self, encoded: dict[str, list[torch.Tensor]],
                      pooling: dict[str, torch.Tensor | None] | None = None) -> AVFeatures:
        """Per-segment features: the class token after the final norm (ViT), or the final norm averaged over
        tokens (Swin: its ImageNet head's pooling, used by STG-CMA and LAVISH); where ``pooling`` gives a
        modality weights over its final tokens, (B·T, [1 +] N) summing to 1 (DG-SCT's guided pooling maps), the
        final norm weighted by them instead. A modality outside :attr:`final_norm_modalities` is pooled from its
        last block's raw output instead. Token maps at the taps of :func:`map_taps`, patch tokens only, the
        last one the tokens the per-segment features come from (after the final norm, where it applies); the
        others are the blocks' raw outputs."""
        pooling = pooling or {}
        out: dict[str, torch.Tensor | None] = {"video": None, "audio": None}
        maps: dict[str, list[torch.Tensor]] = {"video": [], "audio": []}
        for modality, taps in encoded.items():
            *earlier, last = taps
            normed = self.final_norm(last, modality) if modality in self.final_norm_modalities else last
            # (B, T, [1 +] N_s, D_s) per tap
            per_segment = [x.view(-1, self.num_frames, *x.shape[1:]) for x in (*earlier, normed)]
            final = per_segment[-1]
            weights = pooling.get(modality)
            if weights is not None:
                weights = weights.view(*final.shape[:3], 1).to(final.dtype)  # (B, T, [1 +] N, 1)
                out[modality] = (weights * final).sum(2)  # (B, T, D) guided pooling
            elif self.encoder(modality).family == "vit":
                out[modality] = final[:, :, 0]  # (B, T, D) class token per segment
            else:
                out[modality] = final.mean(2)  # (B, T, D) average over tokens
            if self.encoder(modality).family == "vit":
                maps[modality] = [x[:, :, 1:] for x in per_segment]  # (B, T, N, D) patch tokens, row-major
            else:
                maps[modality] = per_segment
        return AVFeatures(out["video"], out["audio"], maps["video"], maps["audio"])
