"""Method-agnostic building blocks shared by the adapter and prompt methods."""

from avadapt.layers.adapter import BottleneckAdapter
from avadapt.layers.cross_modal import CrossModalGates, parameter_free_cross_attention
from avadapt.layers.temporal import along_time

__all__ = ["BottleneckAdapter", "CrossModalGates", "along_time", "parameter_free_cross_attention"]
