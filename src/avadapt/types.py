"""The records that cross package boundaries: a batch going in, features coming out, and the groups of
trainable parameters a method hands to the optimiser."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class AVBatch:
    """One batch of clips cut into T segments.

    video: (B, T, 3, H, W) frames already normalised with the backbone's data config.
    audio: (B, T, 1, F, L) normalised log-mel fbank per segment, F mel bins (rows) × L frames (columns).
    targets: task-specific tensors, e.g. ``{"labels": (B, T) long}`` for event localisation.
    inputs: what the task's head takes besides the features (a question's tokens), by the names the task lists
        in ``Task.inputs``.
    meta: per-sample identifiers (row index, video id, file path) for reports and pictures.
    """

    video: torch.Tensor
    audio: torch.Tensor
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, list] = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> AVBatch:
        return AVBatch(
            video=self.video.to(device),
            audio=self.audio.to(device),
            targets={k: v.to(device) for k, v in self.targets.items()},
            meta=self.meta,
            inputs={k: v.to(device) for k, v in self.inputs.items()},
        )

    def __len__(self) -> int:
        return self.video.shape[0]


@dataclass
class AVFeatures:
    """What an adapted backbone hands to a task head.

    video, audio: (B, T, D) one vector per segment (final-norm CLS or pooled tokens); None when the
    method runs that modality's branch off.
    video_maps, audio_maps: multi-scale token maps for dense heads, (B, T, N_s, D_s) each, the patch tokens only
    (no class or prompt tokens) with N_s = h_s·w_s in row-major order, so ``reshape(B, T, h_s, w_s, D_s)``
    gives the grid; empty when the branch is off. A ViT gives four, the outputs of the blocks at ¼, ½, ¾
    and the full depth (``methods.base.vit_map_taps``; a ViT of fewer than four blocks repeats one), all on
    the patch grid; a Swin gives one per stage, before the next stage's patch merging (56², 28², 14², 7²
    tokens at 224 pixels). The last map holds the tokens the per-segment vectors come from (after the
    final norm, except for DG-SCT's own audio encoder), the others are raw block outputs. Widths and strides:
    ``FeatureSpec.map_dims`` / ``map_strides``.
    """

    video: torch.Tensor | None
    audio: torch.Tensor | None
    video_maps: list[torch.Tensor] = field(default_factory=list)
    audio_maps: list[torch.Tensor] = field(default_factory=list)

    def select(self, index: torch.Tensor) -> AVFeatures:
        """The features of the clips ``index`` (B',) picks along the batch axis, in that order (repeats allowed)."""
        def pick(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.index_select(0, index)

        return AVFeatures(pick(self.video), pick(self.audio), [pick(x) for x in self.video_maps],
                          [pick(x) for x in self.audio_maps])


@dataclass(frozen=True)
class FeatureSpec:
    """What a method hands to a task head, known before any input is seen: the head is built from it.

    dim: width of the per-segment vectors ``AVFeatures.video`` / ``.audio``.
    modalities: the active branches, e.g. ``("video", "audio")``.
    num_segments: T, segments per clip.
    map_dims, map_strides: per entry of ``AVFeatures.video_maps`` (and ``audio_maps``), its channel width and
        its stride in input pixels (spectrogram bins and frames for audio): a map of an H × W input holds
        (H / stride)·(W / stride) tokens. A ViT: four maps, (D, D, D, D) at the patch size (the head learns
        any up- or down-sampling into a pyramid, as ViTDet's simple feature pyramid); a Swin: one per stage,
        the stage widths at strides 4, 8, 16, 32.
    image_size: (H, W) of the frames the method takes.
    family: the backbone family (``vit``, ``swin``).
    audio_dim, audio_map_dims, audio_map_strides: the same for the audio side (``AVFeatures.audio`` and
        ``audio_maps``) where a method encodes audio with an encoder of its own (DG-SCT: HTS-AT beside Swin-V2);
        None (the default) means the visual values, as for every method that shares one backbone.
    """

    dim: int
    modalities: tuple[str, ...]
    num_segments: int
    map_dims: tuple[int, ...]
    map_strides: tuple[int, ...]
    image_size: tuple[int, int]
    family: str
    audio_dim: int | None = None
    audio_map_dims: tuple[int, ...] | None = None
    audio_map_strides: tuple[int, ...] | None = None

    def __post_init__(self):
        for name, visual in (("audio_dim", self.dim), ("audio_map_dims", self.map_dims),
                             ("audio_map_strides", self.map_strides)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, visual)

    def width(self, modality: str) -> int:
        """Width of the per-segment vectors of ``modality`` (``video`` or ``audio``)."""
        return self.audio_dim if modality == "audio" else self.dim


@dataclass
class ParameterGroup:
    """Trainable parameters of a method that share one learning rate: ``lr_factor`` × the training's base lr.

    Methods name their groups (``AVMethod.parameter_groups``) so that a rate of their own (AV-STFP's
    ``prompt_lr_factor``) lives with the method, and the training system needs no method's name.
    """

    name: str
    params: list[torch.nn.Parameter]
    lr_factor: float = 1.0
