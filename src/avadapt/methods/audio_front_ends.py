"""The audio pipelines the methods were trained with, per backbone family and task, as named configs.

An adapter trained on one spectrogram distribution expects the same one at inference, so each entry pairs
the fbank "image" (values for ``avadapt.data.fbank.FbankConfig``; unlisted fields keep its defaults: 16 kHz,
25 ms Hanning windows, dither 0, ``htk_compat``, no energy, 1 s windows, ``(x − mean) / (2·std)``) with how
the backbone embeds it (``AudioEmbeddingConfig``). Methods never import the data package; callers build
``FbankConfig(**front_end.fbank)`` and pass ``backbone_options={"audio": front_end.embedding}``.

Sources: ``shared/reference/methods.md`` §1 (LAVISH loaders) and §3 (STG-CMA audio front-end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from avadapt.backbones import AudioEmbeddingConfig


@dataclass(frozen=True)
class AudioFrontEnd:
    """Fbank settings (``FbankConfig`` keyword values) and the audio embedding of one method × backbone × task."""

    embedding: AudioEmbeddingConfig
    fbank: Mapping[str, float | int] = field(default_factory=dict)
    source: str = ""


# CLIP/ViT loaders of STG-CMA and LAVISH: 1 s, 128 mel, 10 ms shift, 102 frames, AST-style statistics.
VIT_AUDIO = AudioFrontEnd(
    AudioEmbeddingConfig(num_mel_bins=128, num_frames=102, kernel_reduction="sum", pos_embed="crop"),
    {"num_mel_bins": 128, "frame_shift_ms": 10.0, "target_frames": 102, "mean": -4.1426, "std": 3.2001},
    "STG-CMA CLIP code (patch kernel summed over RGB); LAVISH ViT loader",
)

_STG_CMA_SWIN_EMBEDDING = AudioEmbeddingConfig(num_mel_bins=224, num_frames=224, kernel_reduction="mean")
_STG_CMA_SWIN_FBANK = {"num_mel_bins": 224, "frame_shift_ms": 4.4, "target_frames": 224}
# STG-CMA on Swin/224: 224 mel × 224 frames at a 4.4 ms shift, patch kernel averaged over RGB. AVE reuses the
# 128-mel statistics (the official script does); AVS/AVQA cut a 1.95 s window to its first 224 frames.
STG_CMA_SWIN_AUDIO = {
    "ave": AudioFrontEnd(_STG_CMA_SWIN_EMBEDDING, {**_STG_CMA_SWIN_FBANK, "mean": -4.1426, "std": 3.2001},
                         "STG-CMA Swin AVE loader"),
    "avs": AudioFrontEnd(_STG_CMA_SWIN_EMBEDDING,
                         {**_STG_CMA_SWIN_FBANK, "window_seconds": 1.95, "mean": -5.6696, "std": 3.9484},
                         "STG-CMA Swin AVS loader"),
    "avqa": AudioFrontEnd(_STG_CMA_SWIN_EMBEDDING,
                          {**_STG_CMA_SWIN_FBANK, "window_seconds": 1.95, "mean": -5.2144, "std": 3.8699},
                          "STG-CMA Swin AVQA loader"),
}

# LAVISH on Swin-V2-L/192: the spectrogram tiled to three channels through the unchanged RGB patch embedding,
# which is the one-channel convolution with the RGB kernel summed (kernel_reduction="sum").
_LAVISH_SWIN_EMBEDDING = AudioEmbeddingConfig(num_mel_bins=192, num_frames=192, kernel_reduction="sum")
LAVISH_SWIN_AUDIO = {
    "ave": AudioFrontEnd(_LAVISH_SWIN_EMBEDDING, {"num_mel_bins": 192, "frame_shift_ms": 5.2, "target_frames": 192,
                                                  "mean": -4.9848, "std": 3.7080}, "LAVISH AVE loader"),
    "avs": AudioFrontEnd(_LAVISH_SWIN_EMBEDDING, {"num_mel_bins": 192, "frame_shift_ms": 10.0, "target_frames": 192,
                                                  "mean": -5.2105, "std": 3.5918},
                         "LAVISH AVS loader (1 s windows, ~98 frames zero-padded to 192)"),
    "avqa": AudioFrontEnd(_LAVISH_SWIN_EMBEDDING, {"num_mel_bins": 192, "frame_shift_ms": 10.0, "target_frames": 192,
                                                   "window_seconds": 1.95, "mean": -5.3853, "std": 3.5929},
                          "LAVISH AVQA loader (1.95 s windows)"),
}

AUDIO_FRONT_ENDS: dict[tuple[str, str, str], AudioFrontEnd] = {
    **{(method, "vit", task): VIT_AUDIO for method in ("stg_cma", "lavish", "av_stfp", "probe") for task in ("ave",)},
    **{("stg_cma", "swin", task): front_end for task, front_end in STG_CMA_SWIN_AUDIO.items()},
    **{("probe", "swin", task): front_end for task, front_end in STG_CMA_SWIN_AUDIO.items()},
    **{("lavish", "swin", task): front_end for task, front_end in LAVISH_SWIN_AUDIO.items()},
}


def audio_front_end(method: str, family: str, task: str = "ave") -> AudioFrontEnd:
    """The named front end of ``method`` on a ``family`` ("vit" | "swin") backbone for ``task``."""
    try:
        return AUDIO_FRONT_ENDS[(method, family, task)]
    except KeyError:
        known = ", ".join("/".join(key) for key in sorted(AUDIO_FRONT_ENDS))
        raise KeyError(f"no audio front end for {method}/{family}/{task}; known: {known}") from None
