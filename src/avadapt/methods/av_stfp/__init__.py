"""AV-STFP: spatial-, temporal- and fusion-prompted frozen image ViT for audio-visual tasks (our design)."""

from avadapt.methods.av_stfp.config import AVSTFPConfig
from avadapt.methods.av_stfp.model import AVSTFP, LayerPrompts

__all__ = ["AVSTFP", "AVSTFPConfig", "LayerPrompts"]
