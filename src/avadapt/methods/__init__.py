"""One package per method; importing this registers them all in ``avadapt._registry.METHODS``."""

from avadapt.methods import av_stfp, dg_sct, lavish, probe, stg_cma  # noqa: F401  (registration side effect)
from avadapt.methods.base import AVMethod

__all__ = ["AVMethod"]
