"""STG-CMA options: paper defaults, the Tiny/Base presets and the ablation switches."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from avadapt._config import JSONConfig
from avadapt.errors import OptionError
from avadapt.layers.cross_modal import FUSION_DIRECTIONS
from avadapt.methods.base import BRANCHES

# Bottleneck width as a fraction of the backbone width, for CLIP ViTs (STG-CMA Table 1).
# "vanilla" 1/8 is what the official ViT-B/16 script calls Base: it gives the paper's 11.5M row.
RATIO_PRESETS: dict[str, str] = {"tiny": "1/32", "base": "1/16", "vanilla": "1/8"}


def parse_ratio(value: str | float) -> float:
    """``"1/32"``, ``0.03125`` or ``"0.03125"`` → 0.03125."""
    try:
        ratio = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise OptionError(f"adapter ratio must be a fraction such as 1/16 or 0.0625, got {value!r}") from None
    if not 0 < ratio <= 1:
        raise OptionError(f"adapter ratio must be in (0, 1], got {value!r}")
    return ratio


@dataclass
class STGCMAConfig(JSONConfig):
    """Configuration of STG-CMA (Wang et al., CVPRW 2024).

    preset / ratio: bottleneck width = ratio × D; give a preset (tiny 1/32, base 1/16, vanilla 1/8) or an
        explicit ratio ("1/16" or 0.0625), not both. Neither means base.
    num_frames: segments per clip T (10 for AVE and AVQA, 5 for AVS); sizes the temporal embeddings.
    temporal_adaptation / spatial_adaptation / global_adaptation: the three steps of a block (Table 7);
        a step switched off falls back to the frozen branch alone.
    fusion: cross-modal exchange direction (Table 5): both | audio_to_visual | visual_to_audio | none.
    branches: audio_visual | audio_only | visual_only.
    drop_path: stochastic depth on the temporal step's adapted residual (per clip and token position),
        rising linearly from 0 over depth; frozen computation is never dropped.
    tune_final_norm: train a copy of the final LayerNorm. None follows the official code per backbone:
        on for CLIP ViTs (it trains ln_post), off for Swin (its trainable names miss Swin's norm).
    full_finetune: also train every backbone weight (reference row, not parameter-efficient).
    recompute_frozen: in backward, recompute the frozen FFN's hidden activation and the frozen temporal
        attention instead of storing them (CLIP ViT-B/16, T = 10, batch 2, bf16: 2045 MB and 14.6 s a step
        against 2740 MB and 10.3 s; ``docs/performance.md``).
    activation_checkpointing: recompute each whole block in the backward pass, trading time for memory
        (same setting: 1678 MB, 13.7 s a step).
    """

    preset: str | None = None
    ratio: float | str | None = None
    num_frames: int = 10
    temporal_adaptation: bool = True
    spatial_adaptation: bool = True
    global_adaptation: bool = True
    fusion: str = "both"
    branches: str = "audio_visual"
    drop_path: float = 0.2
    tune_final_norm: bool | None = None
    full_finetune: bool = False
    recompute_frozen: bool = False
    activation_checkpointing: bool = False

    def __post_init__(self):
        if self.preset is not None and self.ratio is not None:
            raise OptionError("give STG-CMA either a preset or a ratio, not both")
        if self.preset is not None and self.preset not in RATIO_PRESETS:
            raise OptionError(f"unknown STG-CMA preset {self.preset!r}; known: {sorted(RATIO_PRESETS)}")
        if self.ratio is not None:
            self.ratio = parse_ratio(self.ratio)
        if self.fusion not in FUSION_DIRECTIONS:
            raise OptionError(f"fusion must be one of {FUSION_DIRECTIONS}, got {self.fusion!r}")
        if self.branches not in BRANCHES:
            raise OptionError(f"branches must be one of {sorted(BRANCHES)}, got {self.branches!r}")
        if self.num_frames < 1:
            raise OptionError(f"num_frames must be ≥ 1, got {self.num_frames}")
        if not 0 <= self.drop_path < 1:
            raise OptionError(f"drop_path must be in [0, 1), got {self.drop_path}")

    @property
    def bottleneck_ratio(self) -> float:
        if self.ratio is not None:
            return float(self.ratio)
        return parse_ratio(RATIO_PRESETS[self.preset or "base"])
