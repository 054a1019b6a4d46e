"""STG-CMA: Spatial-Temporal-Global Cross-Modal Adaptation (Wang et al., CVPRW 2024)."""

from avadapt.methods.stg_cma.config import RATIO_PRESETS, STGCMAConfig
from avadapt.methods.stg_cma.model import STGCMA
from avadapt.methods.stg_cma.modules import STGCMABlock

__all__ = ["RATIO_PRESETS", "STGCMA", "STGCMABlock", "STGCMAConfig"]
