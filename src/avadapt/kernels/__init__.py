"""CPU fast paths, each behind a probe with a plain fallback; the only package that touches private torch
APIs or the C library. ``cpu_fast_path`` alone chooses: the fast paths run for CPU tensors only, and every
kernel runs its plain PyTorch call on any other device, while ``torch.compile`` traces, and inside
``plain_pytorch()``.

Model code calls plain operations through this interface and reads like the equations it implements:

- ``FrozenSelfAttention``, ``FrozenMLP``: a frozen ViT block's two residual branches, computed from its own
  modules (frozen weights cast once, no weight gradients, oneDNN's bias-fused linear, the bf16 packed
  attention, optional recomputation); ``FrozenBranch`` runs any other frozen callable.
- ``branch_and_projection``, ``projection_of_branch``: a trainable linear map applied to a frozen branch's
  output, fused with the branch's own last linear map where it can be.
- ``rebuilt_in_backward``: autograd keeps a recipe instead of a residual sum.
- ``scaled_dot_product_attention``, ``packed_self_attention``, ``frozen_linear``: the single kernels.
- ``enable_huge_pages``, ``tune_heap_for_training``: glibc heap tuning for CPU training.
- ``cpu_supports_bf16``: whether bf16 autocast pays off on this CPU.
"""

from avadapt.kernels.attention import at_least_fp32, packed_self_attention, scaled_dot_product_attention
from avadapt.kernels.branches import (
    ACTIVATIONS,
    FrozenBranch,
    FrozenMLP,
    FrozenSelfAttention,
    branch_and_projection,
    projection_of_branch,
    should_recompute,
)
from avadapt.kernels.cpu import cpu_supports_bf16
from avadapt.kernels.heap import (
    HeapTuning,
    enable_huge_pages,
    heap_tuning_enabled,
    return_free_heap,
    tune_heap_for_training,
)
from avadapt.kernels.linear import frozen_linear
from avadapt.kernels.recompute import rebuilt_in_backward
from avadapt.kernels.selection import cpu_fast_path, plain_pytorch

__all__ = ["ACTIVATIONS", "FrozenBranch", "FrozenMLP", "FrozenSelfAttention", "HeapTuning", "at_least_fp32",
           "branch_and_projection", "cpu_fast_path", "cpu_supports_bf16", "enable_huge_pages", "frozen_linear",
           "heap_tuning_enabled", "packed_self_attention", "plain_pytorch", "projection_of_branch", "rebuilt_in_backward",
           "return_free_heap", "scaled_dot_product_attention", "should_recompute", "tune_heap_for_training"]
