"""Method-agnostic building blocks shared by the adapter and prompt methods."""

from avadapt.layers.adapter import BottleneckAdapter
from avadapt.layers.cross_modal import CrossModalGates, parameter_free_cross_attention
from avadapt.layers.residual import StochasticDepth
from avadapt.layers.temporal import along_time
from avadapt.layers.temporal_relation import TemporalRelationModule

__all__ = ["BottleneckAdapter", "CrossModalGates", "StochasticDepth", "TemporalRelationModule", "along_time",
           "parameter_free_cross_attention"]
