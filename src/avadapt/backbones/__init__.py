"""Frozen timm backbones with a video and an audio entrance: ``create_backbone(name, ...)``; HTS-AT's audio
encoder (a one-channel timm Swin, DG-SCT's audio backbone): ``create_htsat(preset, weights)``."""

from __future__ import annotations

from pathlib import Path

import timm

from avadapt.backbones.htsat import (
    HTSAT_PRESETS,
    HTSATBackbone,
    HTSATConfig,
    create_htsat,
    fold_spectrogram,
    load_htsat_state_dict,
    load_htsat_weights,
)
from avadapt.backbones.swin import SWIN_MODEL_TYPES, SwinBackbone, SwinBlockHandle, SwinStageHandle
from avadapt.backbones.vit import AudioEmbeddingConfig, BlockHandle, ViTBackbone
from avadapt.backbones.weights import load_backbone_state_dict, load_backbone_weights
from avadapt.checkpoint_files import UnsafeCheckpointError, read_state_dict
from avadapt.errors import OptionError

Backbone = ViTBackbone | SwinBackbone


def create_backbone(
    name: str,
    pretrained: bool = False,
    weights: str | Path | None = None,
    audio: AudioEmbeddingConfig | None = None,
    **timm_kwargs,
) -> Backbone:
    """A frozen backbone built by ``timm.create_model``.

    name: a timm name, with or without a pretrained tag (``vit_base_patch16_clip_224.openai``; the
    ``*_clip_quickgelu_224.openai`` variants reproduce OpenAI's QuickGELU exactly).
    pretrained: let timm fetch the tag's weights (or read ``pretrained_cfg_overlay=dict(file=...)``).
    weights: a local ``.safetensors`` or torch checkpoint, read without unpickling arbitrary objects;
    OpenAI CLIP / open_clip layouts are converted by timm's filter for the architecture.
    The wrapper follows the timm model's type: a ``VisionTransformer`` becomes a ``ViTBackbone`` (family
    "vit"), a ``SwinTransformer`` / ``SwinTransformerV2`` a ``SwinBackbone`` (family "swin").
    audio: how spectrograms are embedded; None means the family's default (ViT: 128 mel × 102 frames,
    kernel summed; Swin: the image size, kernel averaged).
    """
    if weights is not None and pretrained:
        raise OptionError("pass either pretrained=True (timm source) or weights=PATH (local file), not both")
    if not timm.is_model(name):
        raise OptionError(f"unknown timm backbone {name!r} (timm.list_models() lists the known names)")
    model = timm.create_model(name, pretrained=pretrained, num_classes=0, **timm_kwargs)
    if weights is not None:
        load_backbone_weights(model, weights)
    if isinstance(model, SWIN_MODEL_TYPES):
        return SwinBackbone(model, name=name, audio=audio)
    return ViTBackbone(model, name=name, audio=audio)


def create_audio_backbone(
    name: str,
    pretrained: bool = False,
    weights: str | Path | None = None,
    audio: AudioEmbeddingConfig | None = None,
    **options,
) -> Backbone:
    """A frozen audio encoder of its own, beside the visual backbone (DG-SCT's HTS-AT beside Swin-V2).

    The encoder is seen through the same wrapper as a visual backbone (block handles, stages, final norm):
    methods that take one call ``audio_tokens`` and the handles.

    name: ``htsat`` (HTS-AT's AudioSet shape) or ``htsat_<preset>`` (``htsat_tiny``): :func:`create_htsat`, with
    ``options`` replacing :class:`HTSATConfig` fields and ``weights`` an HTS-AT checkpoint; its spectrogram size
    follows ``audio`` (the front end's mel bins × frames). Any timm Swin or ViT name builds a timm model with
    ``options`` as timm keyword arguments (``in_chans=1``, ``img_size=256``, …); a Swin's spectrogram is its
    image size.
    """
    if name == "htsat" or name.startswith("htsat_"):
        if pretrained:
            raise OptionError("HTS-AT has no timm source: pass its checkpoint as weights=PATH")
        preset = name.partition("_")[2] or "audioset"
        size = {"num_mel_bins": audio.num_mel_bins, "num_frames": audio.num_frames} if audio is not None else {}
        return create_htsat(preset, weights=weights, **{**size, **options})
    return create_backbone(name, pretrained=pretrained, weights=weights, audio=audio, **options)


__all__ = [
    "HTSAT_PRESETS",
    "AudioEmbeddingConfig",
    "Backbone",
    "BlockHandle",
    "HTSATBackbone",
    "HTSATConfig",
    "SwinBackbone",
    "SwinBlockHandle",
    "SwinStageHandle",
    "UnsafeCheckpointError",
    "ViTBackbone",
    "create_audio_backbone",
    "create_backbone",
    "create_htsat",
    "fold_spectrogram",
    "load_backbone_state_dict",
    "load_backbone_weights",
    "load_htsat_state_dict",
    "load_htsat_weights",
    "read_state_dict",
]
