"""LAVISH options: the per-task presets of the official README commands and the ablation switches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avadapt._config import JSONConfig
from avadapt.errors import OptionError
from avadapt.methods.base import BRANCHES
from avadapt.methods.stg_cma.config import parse_ratio

# Per-task settings of the official commands (GenjiB/LAVISH, each task's training script):
# latent tokens m, bottleneck width D/k, groups of the 1×1 convolutions, BatchNorm after them, whether
# audio adapters have an output gate, whether the backbone's LayerNorms train (``is_vit_ln``), the
# initialisation of the latent tokens, and the frozen backbone's stochastic depth: the official code builds
# timm's Swin-V2-L with its default drop_path_rate (0.1) and leaves the whole model in train mode, so the
# frozen attention and MLP branches are dropped per sample in training.
REFERENCE_BACKBONE_DROP_PATH = 0.1
TASK_PRESETS: dict[str, dict[str, Any]] = {
    "ave": {"num_latent_tokens": 2, "ratio": "1/8", "conv_groups": 2, "batch_norm": True, "audio_gate": True,
            "tune_backbone_norms": False, "latent_init": "uniform",
            "backbone_drop_path": REFERENCE_BACKBONE_DROP_PATH},
    "avs": {"num_latent_tokens": 16, "ratio": "1/4", "conv_groups": 2, "batch_norm": False, "audio_gate": False,
            "tune_backbone_norms": True, "latent_init": "zeros", "backbone_drop_path": REFERENCE_BACKBONE_DROP_PATH},
    "avqa": {"num_latent_tokens": 64, "ratio": "1/8", "conv_groups": 4, "batch_norm": False, "audio_gate": True,
             "tune_backbone_norms": True, "latent_init": "zeros", "backbone_drop_path": REFERENCE_BACKBONE_DROP_PATH},
}
LATENT_INITS = ("uniform", "zeros")


@dataclass
class LAVISHConfig(JSONConfig):
    """Configuration of LAVISH (Lin et al., CVPR 2023).

    preset: ave | avs | avqa, the official per-task settings; any option given explicitly overrides it. The
        preset is not picked from the task: every task, one without a preset of its own too, starts from the
        AVE settings (the default) unless it names another.
    num_latent_tokens: m latent tokens that summarise the other modality before fusion (Eq. 6–7).
    ratio: bottleneck width D/k as a fraction of the block width ("1/8" or 0.125).
    conv_groups: groups of the two 1×1 convolutions of the bottleneck.
    batch_norm: BatchNorm after each 1×1 convolution.
    audio_gate: audio adapters get the zero-initialised output gate too (visual adapters always do). Without
        it the audio stream is not the frozen backbone's at initialisation (AVS preset).
    tune_backbone_norms: train the backbone's own LayerNorms (``is_vit_ln=1`` of the AVS/AVQA commands).
    latent_init: uniform (U[0, 1), AVE) or zeros (AVS, AVQA).
    backbone_drop_path: stochastic depth on the frozen attention and MLP branches in training, rising linearly
        from 0 over the blocks to this rate (the reference's Swin-V2 ran with timm's 0.1 active); the frozen
        modules' dropout and normalisation statistics stay in eval behaviour. 0 switches it off.
    cross_modal_fusion: the latent-token exchange; off leaves four unimodal bottleneck adapters per block.
    num_frames: segments per clip T. branches: audio_visual | audio_only | visual_only (a single branch has
        no other modality to fuse, so its adapters are unimodal).
    full_finetune: also train every backbone weight (reference row, not parameter-efficient).
    """

    preset: str = "ave"
    num_latent_tokens: int | None = None
    ratio: float | str | None = None
    conv_groups: int | None = None
    batch_norm: bool | None = None
    audio_gate: bool | None = None
    tune_backbone_norms: bool | None = None
    latent_init: str | None = None
    backbone_drop_path: float | None = None
    cross_modal_fusion: bool = True
    num_frames: int = 10
    branches: str = "audio_visual"
    full_finetune: bool = False

    def __post_init__(self):
        if self.preset not in TASK_PRESETS:
            raise OptionError(f"unknown LAVISH preset {self.preset!r}; known: {sorted(TASK_PRESETS)}")
        for name, value in TASK_PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self.ratio = parse_ratio(self.ratio)
        if self.num_latent_tokens < 1:
            raise OptionError(f"num_latent_tokens must be ≥ 1, got {self.num_latent_tokens}")
        if self.conv_groups < 1:
            raise OptionError(f"conv_groups must be ≥ 1, got {self.conv_groups}")
        if not 0 <= self.backbone_drop_path < 1:
            raise OptionError(f"backbone_drop_path must be in [0, 1), got {self.backbone_drop_path}")
        if self.latent_init not in LATENT_INITS:
            raise OptionError(f"latent_init must be one of {LATENT_INITS}, got {self.latent_init!r}")
        if self.branches not in BRANCHES:
            raise OptionError(f"branches must be one of {sorted(BRANCHES)}, got {self.branches!r}")
        if self.num_frames < 1:
            raise OptionError(f"num_frames must be ≥ 1, got {self.num_frames}")
