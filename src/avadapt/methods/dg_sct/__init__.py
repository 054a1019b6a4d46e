"""DG-SCT: dual-guided spatial-channel-temporal adapters between two frozen encoders (Duan et al., NeurIPS 2023)."""

from avadapt.methods.dg_sct.config import TASK_PRESETS, DGSCTConfig
from avadapt.methods.dg_sct.model import DGSCT
from avadapt.methods.dg_sct.modules import (
    DGSCTAdapter,
    DGSCTBlock,
    DualGuidance,
    GridResizeAlignment,
    GuidedTemporalAttention,
    TokenAxisAlignment,
    TokenLayout,
)
from avadapt.methods.dg_sct.pairing import pair_blocks

__all__ = ["DGSCT", "TASK_PRESETS", "DGSCTAdapter", "DGSCTBlock", "DGSCTConfig", "DualGuidance",
           "GridResizeAlignment", "GuidedTemporalAttention", "TokenAxisAlignment", "TokenLayout", "pair_blocks"]
