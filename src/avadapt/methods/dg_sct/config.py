"""DG-SCT options: the per-task settings of the official code as presets, and the ablation switches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avadapt._config import JSONConfig
from avadapt.errors import OptionError
from avadapt.methods.lavish.config import LATENT_INITS
from avadapt.methods.stg_cma.config import parse_ratio

# Per-task settings of the official code (haoyi-duan/DG-SCT: its adapter module and each task's
# train.sh): cross-modal alignment (``conv``: 1×1 convolution over the token axis N_o→N then Linear D_o→D;
# ``resize``: Linear D_o→D then a bicubic resize of the token grid, S4 only), m latent tokens of the LAVISH
# exchange (32 for AVE, AVVP, S4 and MS3, 2 for AVQA) and their initialisation (uniform for AVE and AVVP, zeros
# in the AVQA and AVS code), the re-weighting constants α, β the reference hard-codes (0.3 / 0.05; MS3 0.2 /
# 0.1), and the LAVISH bottleneck: D/8 with 2 groups and BatchNorm for AVE; AVQA 4 groups without BatchNorm; S4
# without BatchNorm; MS3 D/2 (its script leaves the down-sampling factor at its default 2) without BatchNorm.
# The layout around the bottleneck: AVE and AVVP run LN → bottleneck → LN → gate on both modalities
# (``--is_gate 1``); AVQA the same, its audio adapters without the gate (``is_gate`` left at 0); the AVS code's
# adapter skips the first LN (it builds it, its fused branch never calls it) and gates before the closing LN,
# LN(g · bottleneck), its audio adapters ungated too.
_COMMON = {"ratio": "1/8", "conv_groups": 2, "batch_norm": True, "latent_init": "uniform", "alpha": 0.3, "beta": 0.05,
           "audio_gate": True, "norm_before": True, "gate_before_norm": False}
_AVS = {"audio_gate": False, "norm_before": False, "gate_before_norm": True, "latent_init": "zeros",
        "batch_norm": False}
TASK_PRESETS: dict[str, dict[str, Any]] = {
    "ave": {**_COMMON, "alignment": "conv", "num_latent_tokens": 32},
    "avvp": {**_COMMON, "alignment": "conv", "num_latent_tokens": 32},
    "avqa": {**_COMMON, "alignment": "conv", "num_latent_tokens": 2, "conv_groups": 4, "batch_norm": False,
             "latent_init": "zeros", "audio_gate": False},
    "s4": {**_COMMON, **_AVS, "alignment": "resize", "num_latent_tokens": 32},
    "ms3": {**_COMMON, **_AVS, "alignment": "conv", "num_latent_tokens": 32, "alpha": 0.2, "beta": 0.1,
            "ratio": "1/2"},
}
# Task options the official code sets for DG-SCT (``AVMethod.paper_task_options``): on AVE the CMBS head with
# the post-backbone temporal module, on AVVP the MGN head.
PAPER_TASK_OPTIONS: dict[str, dict[str, Any]] = {"ave": {"head": "cmbs"}, "avvp": {"head": "mgn"}}
ALIGNMENTS = ("conv", "resize")
TEMPORAL_PLACEMENTS = ("head", "adapter")


@dataclass
class DGSCTConfig(JSONConfig):
    """Configuration of DG-SCT (Duan et al., "Cross-modal Prompts: Adapting Large Pre-trained Models for
    Audio-Visual Downstream Tasks", NeurIPS 2023).

    preset: ave | avvp | avqa | s4 | ms3, the official per-task settings; an option given explicitly overrides it.
        The preset is not picked from the task: every task, one without a preset of its own too, starts from
        the AVE settings (the default) unless it names another.
    alignment: how the other modality's tokens Y (N_o × D_o) are brought to this one's N × D before they guide
        it: ``conv`` (token-axis 1×1 convolution N_o→N with bias, then Linear D_o→D) or ``resize`` (Linear, then
        bicubic resize of the token grid).
    num_latent_tokens: m tokens of the LAVISH latent exchange (its gate starts at 0).
    alpha, beta: the re-weighting X ← X ⊙ (α·c + β·σ(s) + 1 − α) of the adapter's input by the channel map c
        and the spatial logits s.
    guidance: the dual (channel + spatial) guidance; off leaves alignment, latent exchange and bottleneck,
        i.e. LAVISH's adapter between two encoders of different shapes (the paper's LAVISH*), pooled by mean
        (Swin) or class token (ViT) instead of the guided pooling maps.
    temporal: where attention over the T segments lives. ``head``: after the backbone, in the task head (the
        official code's post-backbone module); nothing in the method. ``adapter``: a small cross-modal guided
        attention over the segments inside every adapter, as the paper's figure draws it (zero-init gate).
    ratio, conv_groups, batch_norm, latent_init: the LAVISH bottleneck (AVE: D/8, 2 groups, BatchNorm) and the
        latent tokens' initialisation; None takes the preset's.
    audio_gate: audio adapters get the zero-initialised output gate too (visual adapters always do). Without it
        the audio stream is not the frozen encoder's at initialisation (AVQA, S4 and MS3 presets, as their code).
    norm_before: LayerNorm before the bottleneck's down-projection (off in the S4 and MS3 presets).
    gate_before_norm: the output gate scales the bottleneck before its closing LayerNorm, LN(g · z) (S4, MS3),
        instead of after it, g · LN(z). Both are 0 while g is (the LayerNorm's bias starts at 0).
    num_frames: segments per clip T.
    activation_checkpointing: recompute every paired block (its four adapters and both frozen blocks) in the
        backward pass instead of storing its activations, trading time for memory (ViT-B/16 beside a small Swin,
        T = 10, batch 1, fp32: 3907 MB and 43.1 s a step against 6653 MB and 34.7 s; ``docs/performance.md``).
    """

    preset: str = "ave"
    alignment: str | None = None
    num_latent_tokens: int | None = None
    alpha: float | None = None
    beta: float | None = None
    guidance: bool = True
    temporal: str = "head"
    ratio: float | str | None = None
    conv_groups: int | None = None
    batch_norm: bool | None = None
    latent_init: str | None = None
    audio_gate: bool | None = None
    norm_before: bool | None = None
    gate_before_norm: bool | None = None
    num_frames: int = 10
    activation_checkpointing: bool = False

    def __post_init__(self):
        if self.preset not in TASK_PRESETS:
            raise OptionError(f"unknown DG-SCT preset {self.preset!r}; known: {sorted(TASK_PRESETS)}")
        for name, value in TASK_PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.ratio = parse_ratio(self.ratio)
        if self.alignment not in ALIGNMENTS:
            raise OptionError(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")
        if self.temporal not in TEMPORAL_PLACEMENTS:
            raise OptionError(f"temporal must be one of {TEMPORAL_PLACEMENTS}, got {self.temporal!r}")
        if self.num_latent_tokens < 1:
            raise OptionError(f"num_latent_tokens must be ≥ 1, got {self.num_latent_tokens}")
        if not 0 <= self.alpha <= 1 or self.beta < 0:
            raise OptionError(f"need 0 ≤ alpha ≤ 1 and beta ≥ 0, got alpha={self.alpha}, beta={self.beta}")
        if self.conv_groups < 1:
            raise OptionError(f"conv_groups must be ≥ 1, got {self.conv_groups}")
        if self.latent_init not in LATENT_INITS:
            raise OptionError(f"latent_init must be one of {LATENT_INITS}, got {self.latent_init!r}")
        if self.num_frames < 1:
            raise OptionError(f"num_frames must be ≥ 1, got {self.num_frames}")
