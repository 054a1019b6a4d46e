"""AV-STFP options: which prompt types exist, how many, and which streams are prompted."""

from __future__ import annotations

from dataclasses import dataclass

from avadapt._config import JSONConfig
from avadapt.errors import OptionError
from avadapt.methods.base import BRANCHES

TIMELINES = ("differences", "class_tokens")
PROMPT_ATTENTIONS = ("gated", "shared")


@dataclass
class AVSTFPConfig(JSONConfig):
    """Configuration of our AV-STFP design ("Prompt Image to Watch and Hear", BMVC 2025; no public code).

    temporal_prompts / spatial_prompts / fusion_prompts: switch each prompt type on or off (all off gives
        the frozen backbone exactly).
    num_spatial_prompts: prompt tokens every frame's / spectrogram segment's tokens read, per layer and stream.
    num_fusion_prompts: tokens per layer and stream that read their segment and carry it to the other stream.
    prompted: which streams receive prompts: audio_visual | audio_only | visual_only (the other stream runs
        the frozen blocks as they are). Fusion prompts need both streams prompted and are skipped otherwise.
    num_frames: segments per clip T; the temporal prompts hold one learnt time code per segment.
    timeline: what segment t's attention reads as the clip's timeline (keys/values): ``differences``, each
        segment's class token minus segment t's (what changes across the clip, as seen from t), or
        ``class_tokens``, the class tokens themselves (the same timeline for every segment).
    branches: audio_visual | audio_only | visual_only, the streams the model runs at all.
    full_finetune: also train every backbone weight (reference row, not parameter-efficient).
    prompt_lr_factor: learning rate of the prompts, time codes and gates relative to the training's base lr
        (the backbone weights of ``full_finetune`` train at the base lr); 10, chosen on real media's validation
        split (docs/methods.md).
    prompt_attention: ``gated`` (each prompt type in a softmax of its own, added per head through a gate that
        starts at zero: the model starts as the frozen backbone) or ``shared`` (VPT's extra tokens and keys in
        the frozen attention's own softmax).
    """

    temporal_prompts: bool = True
    spatial_prompts: bool = True
    fusion_prompts: bool = True
    num_spatial_prompts: int = 4
    num_fusion_prompts: int = 1
    prompted: str = "audio_visual"
    num_frames: int = 10
    timeline: str = "differences"
    branches: str = "audio_visual"
    full_finetune: bool = False
    prompt_lr_factor: float = 10.0
    prompt_attention: str = "gated"

    def __post_init__(self):
        for name in ("prompted", "branches"):
            if getattr(self, name) not in BRANCHES:
                raise OptionError(f"{name} must be one of {sorted(BRANCHES)}, got {getattr(self, name)!r}")
        if not set(BRANCHES[self.prompted]) & set(BRANCHES[self.branches]):
            raise OptionError(f"prompted={self.prompted!r} names no stream of branches={self.branches!r}")
        if self.spatial_prompts and self.num_spatial_prompts < 1:
            raise OptionError(f"num_spatial_prompts must be ≥ 1 with spatial prompts on, got {self.num_spatial_prompts}")
        if self.fusion_prompts and self.num_fusion_prompts < 1:
            raise OptionError(f"num_fusion_prompts must be ≥ 1 with fusion prompts on, got {self.num_fusion_prompts}")
        if self.timeline not in TIMELINES:
            raise OptionError(f"timeline must be one of {TIMELINES}, got {self.timeline!r}")
        if self.num_frames < 1:
            raise OptionError(f"num_frames must be ≥ 1, got {self.num_frames}")
        if self.prompt_attention not in PROMPT_ATTENTIONS:
            raise OptionError(f"prompt_attention must be one of {PROMPT_ATTENTIONS}, got {self.prompt_attention!r}")
        if not self.prompt_lr_factor > 0:
            raise OptionError(f"prompt_lr_factor must be > 0, got {self.prompt_lr_factor}")
