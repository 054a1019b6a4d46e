"""HTS-AT's audio encoder (Chen et al., ICASSP 2022) as a frozen timm Swin: ``create_htsat(preset, weights)``.

HTS-AT is a Swin Transformer v1 (patch 4, window 8, widths 96 → 768, depths 2/2/6/2, heads 4/8/16/32) over a
one-channel 256 × 256 "image" folded from a log-mel spectrogram. DG-SCT (Duan et al., NeurIPS 2023) uses its
AudioSet checkpoint as the frozen audio encoder beside the visual Swin (haoyi-duan/DG-SCT, its HTS-AT encoder).
The Swin part is timm's ``SwinTransformer`` seen through :class:`~avadapt.backbones.swin.SwinBackbone` (stages,
block handles, final norm); what HTS-AT adds in front of it is :meth:`HTSATBackbone.audio_tokens`:

1. ``bn0``: batch norm over the mel bins with the checkpoint's running statistics (always in eval mode);
2. a bicubic stretch of the time axis (``align_corners=True``) to ``spec_size · freq_ratio`` frames (1001 → 1024
   for a 10 s clip, 501 → 1024 for DG-SCT's 5 s AVS input);
3. the fold of (1024 frames × 64 mel) into a 256 × 256 image: time is cut into ``freq_ratio`` = 4 chunks of 256
   frames, stacked along the frequency axis (:func:`fold_spectrogram`);
4. the patch embedding (4 × 4 convolution, LayerNorm) of the timm Swin.

The log-mel itself is computed by the data pipeline (the ``htsat`` entries of ``avadapt.audio_front_ends``: each
1 s segment tiled to 10 s, or 5 s on AVSBench, as DG-SCT's loaders do), so HTS-AT's ``spectrogram_extractor`` /
``logmel_extractor`` are not part of the encoder. Training-time SpecAugment and dropout are off: the encoder is
frozen and evaluates as at inference whatever ``.train()`` is called with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from avadapt._config import JSONConfig
from avadapt.backbones.swin import SwinBackbone
from avadapt.backbones.vit import AudioEmbeddingConfig
from avadapt.checkpoint_files import read_state_dict
from avadapt.errors import CheckpointError, OptionError

# The timm architecture whose arguments HTS-AT overrides (it is Swin-T's layout with other heads and window).
_TIMM_SWIN = "swin_tiny_patch4_window7_224"


@dataclass(frozen=True)
class HTSATConfig(JSONConfig):
    """HTS-AT's encoder shape; the defaults are the AudioSet model (``HTSAT_AudioSet_Saved_1.ckpt``).

    num_mel_bins × num_frames: the log-mel segment the encoder reads (64 mel × 1001 frames = a 10 s clip at a
    320-sample hop at 32 kHz, HTS-AT's AudioSet input and DG-SCT's tiled second). freq_ratio: how many time
    chunks are stacked along frequency; the image side is ``spec_size = num_mel_bins · freq_ratio`` (256) and the
    time axis is stretched to ``spec_size · freq_ratio`` frames (1024). The rest is the Swin: patch size, window, first width and per-stage depths and heads.
    """

    num_mel_bins: int = 64
    num_frames: int = 1001
    freq_ratio: int = 4
    patch_size: int = 4
    window_size: int = 8
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))  # lists from JSON
        object.__setattr__(self, "num_heads", tuple(self.num_heads))
        if min(self.num_mel_bins, self.num_frames, self.freq_ratio, self.patch_size, self.window_size,
               self.embed_dim) <= 0:
            raise ValueError(f"HTS-AT sizes must be positive: {self}")
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} need one entry per stage")
        if self.num_frames > self.stretched_frames:
            raise ValueError(f"{self.num_frames} frames do not fit the {self.stretched_frames} frames the fold "
                             "takes; HTS-AT only stretches time, it never shortens it")
        if self.spec_size % (self.patch_size * 2 ** (len(self.depths) - 1)):
            raise ValueError(f"a {self.spec_size}-pixel image does not halve {len(self.depths) - 1} times "
                             f"after {self.patch_size}-pixel patches")
        for stage, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** stage) % heads:
                raise ValueError(f"stage {stage} width {self.embed_dim * 2 ** stage} is not divisible by {heads} heads")

    @property
    def spec_size(self) -> int:
        """Side of the square image the Swin reads (256)."""
        return self.num_mel_bins * self.freq_ratio

    @property
    def stretched_frames(self) -> int:
        """Frames after the time stretch, before the fold (1024)."""
        return self.spec_size * self.freq_ratio


HTSAT_PRESETS: dict[str, HTSATConfig] = {
    # HTS-AT's AudioSet model (its config.py: window 8, patch 4, heads 4/8/16/32, 64 mel, spec size 256).
    "audioset": HTSATConfig(),
    # The same input and fold with a narrow, shallow Swin: CPU tests and the embedded demo.
    "tiny": HTSATConfig(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
}


def fold_spectrogram(x: torch.Tensor, freq_ratio: int) -> torch.Tensor:
    """(S, C, F, freq_ratio · W) → (S, C, freq_ratio · F, W): HTS-AT's ``reshape_wav2img`` in (mel, time) order.

    Time is cut into ``freq_ratio`` consecutive chunks of W frames; chunk k becomes rows k·F … k·F + F − 1, so
    ``image[k·F + f, c] = x[f, k·W + c]``: mel bin f of frame k·W + c.
    """
    s, c, mel, frames = x.shape
    if frames % freq_ratio:
        raise ValueError(f"{frames} frames cannot be cut into {freq_ratio} equal chunks")
    x = x.reshape(s, c, mel, freq_ratio, frames // freq_ratio)  # (S, C, F, k, W)
    return x.permute(0, 1, 3, 2, 4).reshape(s, c, freq_ratio * mel, frames // freq_ratio)  # (S, C, k·F, W)


class HTSATBackbone(SwinBackbone):
    """A frozen HTS-AT encoder: a timm ``SwinTransformer`` with one input channel, HTS-AT's ``bn0`` and fold.

    Only the audio entrance exists: ``audio_tokens`` takes ``(S, 1, num_mel_bins, num_frames)`` log-mel segments
    (rows = mel bins, columns = frames, the layout of ``AVBatch.audio``) and returns the first stage's tokens
    ``(S, (spec_size / patch)², embed_dim)``; stages, block handles and the final norm are ``SwinBackbone``'s.
    ``bn0`` is frozen with the Swin and keeps its running statistics in every mode.
    """

    def __init__(self, model: nn.Module, config: HTSATConfig, name: str = "htsat"):
        self.config = config
        super().__init__(model, name, audio=AudioEmbeddingConfig(
            num_mel_bins=config.num_mel_bins, num_frames=config.num_frames, kernel_reduction="sum"))
        self.bn0 = nn.BatchNorm2d(config.num_mel_bins)  # HTS-AT's BatchNorm2d over mel bins, eps 1e-5
        self.set_trainable(False)

    @property
    def audio(self) -> AudioEmbeddingConfig:
        return self._audio

    @audio.setter
    def audio(self, config: AudioEmbeddingConfig) -> None:
        if (config.num_mel_bins, config.num_frames) != (self.config.num_mel_bins, self.config.num_frames):
            raise ValueError(f"{self.name} reads {self.config.num_mel_bins} mel bins × {self.config.num_frames} "
                             f"frames, got {config.num_mel_bins}×{config.num_frames}")
        self._audio = config

    @property
    def audio_grid(self) -> tuple[int, int]:
        """The first stage's token grid (rows, columns) of the folded image (64 × 64)."""
        return self.video_grid

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights in HTS-AT's checkpoint layout (``sed_model.*``; the inverse of
        :func:`htsat_to_timm_key`): what :func:`load_htsat_weights` reads back, e.g. to save a random encoder for
        a demo's runs to share. timm's stage i + 1 opens with the patch merging that closes the original Swin's
        stage i."""
        layout: dict[str, torch.Tensor] = {}
        for key, value in self.state_dict().items():
            name = key.removeprefix("model.")
            merge = _DOWNSAMPLE.match(name)
            if merge:
                name = f"layers.{int(merge.group(1)) - 1}.downsample.{merge.group(2)}"
            layout[f"{_PREFIX}{name}"] = value.contiguous()
        return layout

    def video_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{self.name} is an audio encoder; it has no video entrance")

    def spectrogram_image(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """(S, 1, F, L) log-mel → (S, 1, spec_size, spec_size): bn0, time stretch, fold (steps 1–3 above)."""
        cfg = self.config
        if spectrograms.dim() != 4 or spectrograms.shape[1:] != (1, cfg.num_mel_bins, cfg.num_frames):
            raise ValueError(f"{self.name} reads (S, 1, {cfg.num_mel_bins} mel, {cfg.num_frames} frames) "
                             f"segments, got {tuple(spectrograms.shape)}")
        x = self.bn0(spectrograms.transpose(1, 2)).transpose(1, 2)  # mel bins as channels: (S, F, 1, L) → (S, 1, F, L)
        if cfg.num_frames < cfg.stretched_frames:
            # the mel axis keeps its size, so with align_corners it is left exactly as it is
            x = F.interpolate(x, size=(cfg.num_mel_bins, cfg.stretched_frames), mode="bicubic",
                              align_corners=True)  # (S, 1, F, 1024)
        return fold_spectrogram(x, cfg.freq_ratio)  # (S, 1, 256, 256)

    def audio_tokens(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """(S, 1, F, L) log-mel segments → (S, N, C) normed patch tokens of the first stage (N = 64² for HTS-AT)."""
        return self.model.patch_embed(self.spectrogram_image(spectrograms)).flatten(1, 2)  # (S, H/p * W/p, C)


def create_htsat(preset: str = "audioset", weights: str | Path | None = None, **changes) -> HTSATBackbone:
    """A frozen HTS-AT encoder built by ``timm.create_model``.

    preset: ``"audioset"`` (the AudioSet model's shape, about 27.5M parameters) or ``"tiny"`` (same input and
    fold, 16-wide Swin, for CPU tests and demos); ``changes`` replace :class:`HTSATConfig` fields of the preset
    (e.g. ``depths=(1, 1, 1, 1)``). weights: HTS-AT's Lightning checkpoint (``HTSAT_AudioSet_Saved_1.ckpt``) or
    a file with the same ``sed_model.*`` keys, read safely (see :func:`load_htsat_weights`).
    """
    if preset not in HTSAT_PRESETS:
        raise OptionError(f"unknown HTS-AT preset {preset!r}; known: {', '.join(HTSAT_PRESETS)}")
    config = HTSATConfig.from_dict({**HTSAT_PRESETS[preset].to_dict(), **changes})
    model = timm.create_model(
        _TIMM_SWIN, pretrained=False, num_classes=0, in_chans=1, img_size=config.spec_size,
        patch_size=config.patch_size, window_size=config.window_size, embed_dim=config.embed_dim,
        depths=config.depths, num_heads=config.num_heads, drop_rate=0.0, proj_drop_rate=0.0,
        attn_drop_rate=0.0, drop_path_rate=0.0)
    backbone = HTSATBackbone(model, config, name="htsat" if preset == "audioset" else f"htsat_{preset}")
    if weights is not None:
        load_htsat_weights(backbone, weights)
    return backbone


# HTS-AT checkpoint keys (after the ``sed_model.`` prefix) the encoder does not hold: the front end the data
# pipeline computes, the classification head, and buffers timm rebuilds itself.
_DROPPED = re.compile(r"^(spectrogram_extractor|logmel_extractor|tscam_conv|head)\.|"
                      r"\.(relative_position_index|attn_mask)$")
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")
_PREFIX = "sed_model."


def htsat_to_timm_key(key: str) -> str | None:
    """An HTS-AT key (``sed_model.`` removed) → the encoder's key (``model.*`` or ``bn0.*``); None if dropped.

    The original Swin (and HTS-AT) closes stage i with its patch merging; timm opens stage i + 1 with it, so
    ``layers.i.downsample.*`` becomes ``model.layers.{i+1}.downsample.*``. Both concatenate the 2 × 2 neighbours
    in the same order (rows-then-columns offsets (0,0), (1,0), (0,1), (1,1)), so the weights carry over as they
    are. Everything else keeps its name under ``model.``.
    """
    if _DROPPED.search(key):
        return None
    if key.startswith("bn0."):
        return key
    merge = _DOWNSAMPLE.match(key)
    if merge:
        return f"model.layers.{int(merge.group(1)) + 1}.downsample.{merge.group(2)}"
    return f"model.{key}"


def load_htsat_weights(backbone: HTSATBackbone, path: str | Path) -> None:
    """Load HTS-AT's checkpoint (``state_dict`` keys ``sed_model.*``) into ``backbone``, every weight or none.

    Read without unpickling arbitrary objects (``avadapt.checkpoint_files.read_state_dict``). Keys are mapped
    by :func:`htsat_to_timm_key`; a key of the file the encoder has no place for, an encoder weight the file
    lacks, or a shape that differs is a :class:`~avadapt.errors.CheckpointError` naming the file.
    """
    load_htsat_state_dict(backbone, read_state_dict(path, "HTS-AT checkpoint"), path, prefix=_PREFIX)


def load_htsat_state_dict(backbone: HTSATBackbone, raw: dict[str, torch.Tensor], source: str | Path,
                          prefix: str) -> None:
    """:func:`load_htsat_weights` for tensors already read from ``source``, HTS-AT's keys under ``prefix``
    (``sed_model.`` in HTS-AT's own checkpoint, ``audio_branch.`` in CLAP's); keys outside it are unexpected."""
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}  # encoder key → file key, to name the file's keys in errors
    unexpected = sorted(k for k in raw if not k.startswith(prefix))
    for key, value in raw.items():
        name = htsat_to_timm_key(key.removeprefix(prefix)) if key.startswith(prefix) else None
        if name is not None:
            mapped[name], origin[name] = value, key
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected += sorted(origin[k] for k in set(mapped) - set(expected))
    wrong_shape = [f"{k}: file {tuple(mapped[k].shape)} vs encoder {tuple(expected[k].shape)}"
                   for k in sorted(set(expected) & set(mapped)) if mapped[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{source} does not match the HTS-AT encoder {backbone.name} ({backbone.config}): "
            f"missing {missing[:8]}{'…' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'…' if len(unexpected) > 8 else ''}, wrong shapes {wrong_shape[:4]}")
    backbone.load_state_dict(mapped, strict=True)
