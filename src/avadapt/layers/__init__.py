"""Method-agnostic building blocks shared by the adapter and prompt methods."""

from avadapt.layers.adapter import BottleneckAdapter
from avadapt.layers.cross_modal import CrossModalGates, parameter_free_cross_attention
from avadapt.layers.residual import StochasticDepth
from avadapt.layers.temporal import along_time

__all__ = ["BottleneckAdapter", "CrossModalGates", "StochasticDepth", "along_time", "parameter_free_cross_attention"]
