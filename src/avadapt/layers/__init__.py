"""Method-agnostic building blocks shared by the adapter and prompt methods."""

from avadapt.layers.adapter import BottleneckAdapter
from avadapt.layers.attention import packed_self_attention, scaled_dot_product_attention
from avadapt.layers.cross_modal import CrossModalGates, parameter_free_cross_attention
from avadapt.layers.linear import frozen_linear
from avadapt.layers.residual import StochasticDepth, call_keeping_recipe, rebuilt_in_backward
from avadapt.layers.temporal import along_time

__all__ = ["BottleneckAdapter", "CrossModalGates", "StochasticDepth", "along_time", "call_keeping_recipe",
           "frozen_linear", "packed_self_attention", "parameter_free_cross_attention", "rebuilt_in_backward",
           "scaled_dot_product_attention"]
