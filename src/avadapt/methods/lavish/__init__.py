"""LAVISH: latent audio-visual hybrid adapters in a frozen vision transformer (Lin et al., CVPR 2023)."""

from avadapt.methods.lavish.config import TASK_PRESETS, LAVISHConfig
from avadapt.methods.lavish.model import LAVISH
from avadapt.methods.lavish.modules import GroupedBottleneck, LatentTokenFusion, LAVISHAdapter, LAVISHBlock

__all__ = ["LAVISH", "TASK_PRESETS", "GroupedBottleneck", "LAVISHAdapter", "LAVISHBlock", "LAVISHConfig",
           "LatentTokenFusion"]
