"""The frozen encoders of DG-SCT's few-/zero-shot setting: CLIP (image + text) and CLAP (audio + text), built
offline from local files in their released formats: ``build_text_encoders(TextEncodersConfig(...))``.

The reference (haoyi-duan/DG-SCT, few-shot/ and zero-shot/) pairs CLIP ViT-B/32 (OpenAI weights, QuickGELU) with
CLAP ``630k-audioset-fusion-best.pt`` (HTS-AT + RoBERTa-base); class names read through both text towers are the
classifiers. :func:`write_tiny_text_checkpoints` writes random tiny encoders in the same formats, for tests and
demos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

from avadapt._config import JSONConfig
from avadapt.backbones import create_htsat
from avadapt.errors import OptionError
from avadapt.text._optional import import_optional
from avadapt.text.clap_towers import (
    CLAP_MODELS,
    CLAPTowers,
    build_clap_towers,
    projection,
    write_byte_level_tokenizer,
)
from avadapt.text.clip_towers import TINY_CLIP_CONFIG, CLIPTowers, build_clip_towers


@dataclass(frozen=True)
class TextEncodersConfig(JSONConfig):
    """Which CLIP and CLAP to build and the local files holding them (nothing is downloaded).

    clip_model: an open_clip model name (``open_clip.list_models()``; a plain ViT with OpenAI's text tower, e.g.
    ``ViT-B-32-quickgelu``, DG-SCT's) or ``"tiny"`` (random, tests and demos).
    clap_model: ``"HTSAT-tiny"`` (laion_clap's HTS-AT + RoBERTa-base, every released checkpoint) or ``"tiny"``.
    clip_weights: an OpenAI / open_clip CLIP file (state dict ``.safetensors``, ``.bin`` / ``.pt``, or OpenAI's
    TorchScript ``.pt``). clap_weights: a CLAP checkpoint as laion_clap releases it. None: random weights.
    clap_tokenizer: a folder with roberta-base's ``vocab.json`` and ``merges.txt``.
    clap_audio: the log-mel size CLAP's HTS-AT reads, ``{"num_mel_bins": …, "num_frames": …}`` (default: CLAP's
    64 × 1001, a second tiled to 10 s at 48 kHz); a tiny encoder on a CPU reads a smaller one.
    """

    clip_model: str = "ViT-B-32-quickgelu"
    clap_model: str = "HTSAT-tiny"
    clip_weights: str | None = None
    clap_weights: str | None = None
    clap_tokenizer: str | None = None
    clap_audio: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.clip_model, str) or not self.clip_model:
            raise OptionError(f"clip_model must be an open_clip model name or 'tiny', got {self.clip_model!r}")
        if self.clap_model not in CLAP_MODELS:
            raise OptionError(f"unknown clap_model {self.clap_model!r}; known: {', '.join(CLAP_MODELS)}")
        for name in ("clip_weights", "clap_weights", "clap_tokenizer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str | Path):
                raise OptionError(f"{name} must be a path or None, got {value!r}")
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))  # JSON-ready


def build_text_encoders(config: TextEncodersConfig) -> tuple[CLIPTowers, CLAPTowers]:
    """CLIP's towers and CLAP's towers, frozen, from the files ``config`` names."""
    clip = build_clip_towers(config.clip_model, config.clip_weights)
    clap = build_clap_towers(config.clap_model, config.clap_weights, config.clap_tokenizer, config.clap_audio)
    return clip, clap


# Fusion-only HTS-AT keys of laion_clap's fusion checkpoints (``patch_embed.mel_conv2d``, the AFF module) and
# HTS-AT parts the towers do not hold: written into the tiny CLAP so loading must drop them.
_TINY_DROPPED_SHAPES = {
    "audio_branch.patch_embed.mel_conv2d.weight": (16, 1, 4, 12),
    "audio_branch.patch_embed.mel_conv2d.bias": (16,),
    "audio_branch.patch_embed.fusion_model.local_att.0.weight": (4, 16, 1, 1),
    "audio_branch.patch_embed.fusion_model.local_att.1.running_mean": (4,),
    "audio_branch.spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
    "audio_branch.logmel_extractor.melW": (513, 64),
    "audio_branch.tscam_conv.weight": (527, 128, 2, 3),
    "audio_branch.head.weight": (527, 527),
}


def write_tiny_text_checkpoints(folder: Path, seed: int = 0,
                                clap_audio: dict[str, int] | None = None) -> TextEncodersConfig:
    """Random tiny CLIP and CLAP written as their releases are, and the config that loads them.

    ``folder/open_clip_model.safetensors``: an open_clip state dict of :data:`TINY_CLIP_CONFIG`;
    ``folder/clap_tiny.pt``: ``torch.save({"state_dict": {"module.<key>": …}, "epoch": 1})`` in laion_clap's
    layout, with fusion-only, training-only and front-end keys the loader must drop; ``folder/clap_tokenizer/``:
    a byte-level RoBERTa vocabulary. Seconds on a CPU. clap_audio: the log-mel size of the tiny HTS-AT
    (:class:`TextEncodersConfig`; its ``bn0`` holds one statistic per mel bin).
    """
    open_clip = import_optional("open_clip")
    transformers = import_optional("transformers")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        clip = open_clip.CLIP(**TINY_CLIP_CONFIG)
        clip_path = folder / "open_clip_model.safetensors"
        safetensors.torch.save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(clip_path))

        tiny = CLAP_MODELS["tiny"]
        htsat = create_htsat(tiny.htsat_preset, **(clap_audio or {}))
        with torch.no_grad():  # running statistics other than (0, 1), so bn0 is seen to be loaded
            htsat.bn0.running_mean.normal_(0.0, 1.0)
            htsat.bn0.running_var.uniform_(0.5, 2.0)
        roberta = transformers.RobertaModel(transformers.RobertaConfig(**tiny.roberta), add_pooling_layer=True)
        state: dict[str, torch.Tensor] = {}
        for key, value in htsat.checkpoint_state().items():
            state["audio_branch." + key.removeprefix("sed_model.")] = value
        state.update({f"text_branch.{k}": v for k, v in roberta.state_dict().items()})
        positions = tiny.roberta["max_position_embeddings"]
        state["text_branch.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)  # older transformers
        for name, width in (("audio_projection", htsat.embed_dim), ("text_projection", tiny.roberta["hidden_size"])):
            state.update({f"{name}.{k}": v for k, v in projection(width, tiny.embed_dim).state_dict().items()})
        for name in ("audio_transform", "text_transform"):  # laion_clap's MLPLayers: Linear, ReLU, Dropout, Linear
            for index in (0, 3):
                state[f"{name}.sequential.{index}.weight"] = torch.randn(tiny.embed_dim, tiny.embed_dim) * 0.1
                state[f"{name}.sequential.{index}.bias"] = torch.zeros(tiny.embed_dim)
        for key, shape in _TINY_DROPPED_SHAPES.items():
            state[key] = torch.randn(shape) * 0.01
        state["logit_scale_a"] = torch.tensor(1 / 0.07).log() + torch.rand(()) * 0.1
        state["logit_scale_t"] = torch.tensor(1 / 0.07).log()
        clap_path = folder / "clap_tiny.pt"
        torch.save({"state_dict": {f"module.{k}": v.contiguous() for k, v in state.items()}, "epoch": 1}, clap_path)
    finally:
        torch.random.set_rng_state(generator_state)
    tokenizer = write_byte_level_tokenizer(folder / "clap_tokenizer")
    return TextEncodersConfig(clip_model="tiny", clap_model="tiny", clip_weights=str(clip_path),
                              clap_weights=str(clap_path), clap_tokenizer=str(tokenizer), clap_audio=clap_audio)
