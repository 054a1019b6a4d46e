"""Frozen residual branches (a ViT block's attention and FFN) and their fused paths on a CPU.

``FrozenSelfAttention`` and ``FrozenMLP`` compute a frozen block's two branches from its own modules, as
timm's ``Attention`` and ``Mlp`` do, but with what a frozen backbone allows: frozen weights cast to the
compute dtype once (``FrozenWeightCache``), no weight gradients and oneDNN's bias-fused linear
(``frozen_linear``), the bf16 packed attention, and optional recomputation in backward.

``branch_and_projection(branch, x, linear)`` returns ``(branch(x), linear(branch(x)))`` and
``projection_of_branch`` only the second; a method calls them where its equations apply a trainable linear
map (an adapter's down-projection) to a frozen branch's output. Both branches end in a frozen linear map
(the attention's output projection, the FFN's fc2) and ``linear ∘ that map`` is one linear map, so the
projection is computed from what backward keeps anyway and costs no stored copy of the branch's output.
Any other callable, and every branch off the CPU fast path (``cpu_fast_path``: another device, or
``torch.compile`` tracing), is run as it is and the projection applied to its output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from avadapt.kernels.attention import at_least_fp32, packed_self_attention, scaled_dot_product_attention
from avadapt.kernels.linear import FrozenWeightCache, compute_dtype, frozen_linear, store_frozen_weights_as
from avadapt.kernels.selection import cpu_fast_path

ACTIVATIONS = ("none", "tanh", "quick_gelu")  # GELU exact ("none") or tanh, QuickGELU (OpenAI CLIP weights)


def should_recompute(enabled: bool, x: torch.Tensor) -> bool:
    """Recompute a frozen branch's activations in backward: only when asked and when backward will run."""
    return enabled and torch.is_grad_enabled() and x.requires_grad


def _inactive(module: nn.Module | None) -> bool:
    """A part that does nothing: absent, ``nn.Identity``, or dropout that is off."""
    return module is None or isinstance(module, nn.Identity) or (
        isinstance(module, nn.Dropout) and not (module.p > 0 and module.training))


def _apply(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if module is None else module(x)


class FrozenBranch:
    """A frozen residual branch ``x ↦ f(x)`` (without the residual add), recomputed in backward on request.

    ``recompute``: keep only x for backward and recompute the rest there. The base class runs any callable;
    subclasses compute timm's plain blocks themselves and fuse a following projection.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.fn = fn
        self.recompute = False

    def __call__(self, x: torch.Tensor, recompute: bool | None = None) -> torch.Tensor:
        if should_recompute(self.recompute if recompute is None else recompute, x):
            return checkpoint(self.forward, x, use_reentrant=False)
        return self.forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def forward_and_projection(self, x: torch.Tensor, linear: nn.Linear,
                               need_output: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        y = self.forward(x)
        return (y if need_output else None), linear(y)

    def store_frozen_weights_as(self, dtype: torch.dtype) -> int:
        """Keep this branch's frozen weights in ``dtype`` only, where it computes them itself; bytes freed."""
        return 0


def branch_and_projection(branch: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, linear: nn.Linear,
                          recompute: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(branch(x), linear(branch(x)))``, fused where the branch is a ``FrozenBranch``."""
    return _with_projection(branch, x, linear, True, recompute)


def projection_of_branch(branch: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, linear: nn.Linear,
                         recompute: bool | None = None) -> torch.Tensor:
    """``linear(branch(x))`` without branch(x) itself: a ``FrozenSelfAttention`` over short sequences
    (temporal attention) then keeps only q, k, v and the softmax for backward."""
    return _with_projection(branch, x, linear, False, recompute)[1]


def _with_projection(branch: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, linear: nn.Linear,
                     need_output: bool, recompute: bool | None) -> tuple[torch.Tensor | None, torch.Tensor]:
    if isinstance(branch, FrozenBranch) and cpu_fast_path(x):
        if should_recompute(branch.recompute if recompute is None else recompute, x):
            return checkpoint(branch.forward_and_projection, x, linear, need_output, use_reentrant=False)
        return branch.forward_and_projection(x, linear, need_output)
    y = branch(x, recompute) if isinstance(branch, FrozenBranch) else branch(x)
    return (y if need_output else None), linear(y)


def _fused_projection(linear: nn.Linear, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``linear ∘ (frozen weight, bias)`` as one linear map, in the frozen weight's dtype."""
    linear_weight = linear.weight.to(weight.dtype)
    return linear_weight @ weight, linear.bias + (linear_weight @ bias if bias is not None else 0)


class FrozenSelfAttention(FrozenBranch):
    """``layer_scale(drop(proj(out_norm(attention(q_norm(q), k_norm(k), v)))))`` with q, k, v = qkv(norm(x)),
    as timm's ``Attention`` after the block's ``norm1``: (S, N, D) → (S, N, D)."""

    def __init__(self, norm: nn.Module, qkv: nn.Linear, proj: nn.Linear, num_heads: int, scale: float,
                 q_norm: nn.Module | None = None, k_norm: nn.Module | None = None,
                 out_norm: nn.Module | None = None, proj_drop: nn.Module | None = None,
                 layer_scale: nn.Module | None = None):
        super().__init__()
        self.norm, self.qkv, self.proj = norm, qkv, proj
        self.num_heads, self.head_dim, self.scale = num_heads, qkv.out_features // (3 * num_heads), scale
        self.q_norm, self.k_norm = q_norm, k_norm
        self.out_norm, self.proj_drop, self.layer_scale = out_norm, proj_drop, layer_scale
        self.weights = FrozenWeightCache()

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        s, n, _ = x.shape
        return self.weights.linear(self.qkv, self.norm(x)).view(s, n, 3, self.num_heads, self.head_dim)

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(S, N, 3, H, d) packed q, k, v → (S, N, H·d), with the q/k norms where there are any."""
        if _inactive(self.q_norm) and _inactive(self.k_norm):
            return packed_self_attention(qkv, self.scale)
        s, n = qkv.shape[:2]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (S, H, N, d)
        out = scaled_dot_product_attention(_apply(self.q_norm, q), _apply(self.k_norm, k), v, scale=self.scale)
        return out.transpose(1, 2).reshape(s, n, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._output(self._attend(self._qkv(x)))

    def _output(self, u: torch.Tensor) -> torch.Tensor:
        """(S, N, H·d) attention output → the branch's output: out norm, projection, dropout, layer scale."""
        u = _apply(self.out_norm, u)
        return _apply(self.layer_scale, _apply(self.proj_drop, self.weights.linear(self.proj, u)))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(S, N, D) tokens → their queries, keys and values through the frozen norm and projections (and q/k
        norms), each (S, H, N, d): for methods whose attention reads keys and values the block's own attention
        does not (prompts, other sequences), combined by the method and handed to :meth:`output`."""
        q, k, v = self._qkv(x).permute(2, 0, 3, 1, 4).unbind(0)  # each (S, H, N, d)
        return _apply(self.q_norm, q), _apply(self.k_norm, k), v

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q·kᵀ · scale)·v at the block's scale: (S, H, Nq, d), (S, H, Nk, d) ×2 → (S, H, Nq, d)."""
        return scaled_dot_product_attention(q, k, v, scale=self.scale)

    def output(self, u: torch.Tensor) -> torch.Tensor:
        """(S, H, N, d) per-head attention output → (S, N, D), the branch's output before the residual add."""
        s, _, n, _ = u.shape
        return self._output(u.transpose(1, 2).reshape(s, n, -1))

    def forward_and_projection(self, x: torch.Tensor, linear: nn.Linear,
                               need_output: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """linear(attention(x)) = u·(W_lin·W_proj)ᵀ + W_lin·b_proj + b_lin, u the output projection's input.

        Backward keeps u anyway (the attention kernel's output), so the projection costs no stored copy of
        attention(x). need_output=False skips the output projection; then sequences of at most
        SHORT_SEQUENCE tokens keep only q, k, v and the softmax, and u, as large as x, is recomputed from
        them in backward (2·N FLOPs per token and channel, N ≈ 10 for a temporal attention).
        """
        if not all(_inactive(part) for part in (self.out_norm, self.proj_drop, self.layer_scale)):
            return super().forward_and_projection(x, linear, need_output)
        fused_weight, fused_bias = _fused_projection(
            linear, *self.weights.weights(self.proj, compute_dtype(x)))  # (r, D)
        qkv = self._qkv(x)
        if (not need_output and qkv.shape[1] <= SHORT_SEQUENCE and _inactive(self.q_norm)
                and _inactive(self.k_norm)):
            with torch.autocast(x.device.type, enabled=False):
                compute = qkv.dtype
                return None, _ShortAttentionThenLinear.apply(
                    qkv, fused_weight.to(compute), fused_bias.to(compute), self.scale)
        u = self._attend(qkv)
        hidden = F.linear(u, fused_weight, fused_bias)
        return (self.weights.linear(self.proj, u) if need_output else None), hidden

    def store_frozen_weights_as(self, dtype: torch.dtype) -> int:
        self.weights.clear()
        return store_frozen_weights_as([self.qkv, self.proj], dtype)


class FrozenMLP(FrozenBranch):
    """``layer_scale(drop2(fc2(hidden_norm(drop1(act(fc1(norm(x))))))))``, as timm's ``Mlp`` after the block's
    ``norm2``: (S, N, D) → (S, N, D).

    activation: a name from ``ACTIVATIONS`` (fused with the following projection and differentiated by
    hand) or any module (run as it is).
    """

    def __init__(self, norm: nn.Module, fc1: nn.Linear, activation: str | nn.Module, fc2: nn.Linear,
                 drop1: nn.Module | None = None, hidden_norm: nn.Module | None = None,
                 drop2: nn.Module | None = None, layer_scale: nn.Module | None = None):
        super().__init__()
        if isinstance(activation, str) and activation not in ACTIVATIONS:
            raise ValueError(f"activation must be a module or one of {ACTIVATIONS}, got {activation!r}")
        self.norm, self.fc1, self.activation, self.fc2 = norm, fc1, activation, fc2
        self.drop1, self.hidden_norm, self.drop2, self.layer_scale = drop1, hidden_norm, drop2, layer_scale
        self.weights = FrozenWeightCache()

    def _act(self, h: torch.Tensor) -> torch.Tensor:
        return _activate(h, self.activation) if isinstance(self.activation, str) else self.activation(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self._act(self.weights.linear(self.fc1, self.norm(x)))
        hidden = _apply(self.hidden_norm, _apply(self.drop1, hidden))
        return _apply(self.layer_scale, _apply(self.drop2, self.weights.linear(self.fc2, hidden)))

    def forward_and_projection(self, x: torch.Tensor, linear: nn.Linear,
                               need_output: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """As ``FrozenSelfAttention.forward_and_projection``, with linear ∘ fc2 applied to the hidden
        activation a; a itself is recomputed in backward from the fc1 output that the activation's backward
        keeps anyway."""
        fused = (isinstance(self.activation, str) and not self.fc2.weight.requires_grad and all(
            _inactive(part) for part in (self.drop1, self.hidden_norm, self.drop2, self.layer_scale)))
        if not fused:
            return super().forward_and_projection(x, linear, need_output)
        fc2_weight, fc2_bias = self.weights.weights(self.fc2, compute_dtype(x))
        fused_weight, fused_bias = _fused_projection(linear, fc2_weight, fc2_bias)  # (r, 4D)
        before_act = self.weights.linear(self.fc1, self.norm(x))
        compute = before_act.dtype
        with torch.autocast(x.device.type, enabled=False):
            return _ActivationThenTwoLinears.apply(before_act, self.activation, fc2_weight.to(compute),
                                                   None if fc2_bias is None else fc2_bias.to(compute),
                                                   fused_weight.to(compute), fused_bias.to(compute))

    def store_frozen_weights_as(self, dtype: torch.dtype) -> int:
        self.weights.clear()
        return store_frozen_weights_as([self.fc1, self.fc2], dtype)


SHORT_SEQUENCE = 32  # tokens; up to this (temporal attention), the N × N softmax is kept for backward


def _short_attention(qkv: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """qkv (S, N, 3, H, d) → (q, k, v as one (3, S·H, N, d) tensor, softmax (S·H, N, N) in qkv's dtype,
    output (S, N, H·d)); softmax in ≥ fp32.

    One copy puts q, k and v head-first, so every batched matmul here and in backward reads them as they lie.
    """
    s, n, _, heads, head_dim = qkv.shape
    q, k, v = heads_first = qkv.permute(2, 0, 3, 1, 4).reshape(3, s * heads, n, head_dim)
    probs = _softmax_of_short_rows_(at_least_fp32(torch.bmm(q, k.transpose(1, 2))).mul_(scale)).to(qkv.dtype)
    return heads_first, probs, _heads_last(torch.bmm(probs, v), s)


def _softmax_of_short_rows_(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension, in place, as four whole-tensor ops: PyTorch's CPU softmax kernel is
    slow on rows as short as a temporal attention's (10 frames); forward + backward of one ViT-B/16 temporal
    call took 0.90× the time in bf16 and 0.88× in fp32 this way."""
    scores.sub_(scores.amax(-1, keepdim=True)).exp_()
    return scores.div_(scores.sum(-1, keepdim=True))


def _heads_last(per_head: torch.Tensor, s: int) -> torch.Tensor:
    """(S·H, N, d) → (S, N, H·d)."""
    _, n, head_dim = per_head.shape
    return per_head.view(s, -1, n, head_dim).transpose(1, 2).reshape(s, n, -1)


class _ShortAttentionThenLinear(torch.autograd.Function):
    """``linear(attention(q, k, v), W, b)`` for short sequences, storing q, k, v (head-first) and the softmax.

    The attention output u (S, N, D) is what a linear layer after it would store; here it is recomputed in
    backward from the stored softmax and v (2·N·D FLOPs per sequence, nothing for N ≈ 10) and never kept.
    Everything runs in qkv's dtype; the caller disables autocast.
    """

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
        heads_first, probs, u = _short_attention(qkv, scale)
        ctx.save_for_backward(heads_first, probs, weight)
        ctx.scale, ctx.qkv_shape = scale, qkv.shape
        return F.linear(u, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        heads_first, probs, weight = ctx.saved_tensors
        q, k, v = heads_first
        s, n, _, heads, head_dim = ctx.qkv_shape
        grad_out = grad_out.to(heads_first.dtype)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            u = _heads_last(torch.bmm(probs, v), s)
            grad_weight = grad_out.flatten(0, -2).T @ u.flatten(0, -2)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_out.flatten(0, -2).sum(0)
        grad_qkv = None
        if ctx.needs_input_grad[0]:
            grad_u = (grad_out @ weight).view(s, n, heads, head_dim).transpose(1, 2).reshape(s * heads, n, head_dim)
            grad_probs = at_least_fp32(torch.bmm(grad_u, v.transpose(1, 2)))
            p = at_least_fp32(probs)
            grad_scores = (p * (grad_probs - (grad_probs * p).sum(-1, keepdim=True))).mul_(ctx.scale).to(q.dtype)
            grad_heads_first = torch.empty_like(heads_first)  # (3, S·H, N, d)
            torch.bmm(grad_scores, k, out=grad_heads_first[0])
            torch.bmm(grad_scores.transpose(1, 2), q, out=grad_heads_first[1])
            torch.bmm(probs.transpose(1, 2), grad_u, out=grad_heads_first[2])
            grad_qkv = grad_heads_first.view(3, s, heads, n, head_dim).permute(1, 3, 0, 2, 4).contiguous()
        return grad_qkv, grad_weight, grad_bias, None


def _activate(h: torch.Tensor, kind: str) -> torch.Tensor:
    return h * torch.sigmoid(1.702 * h) if kind == "quick_gelu" else F.gelu(h, approximate=kind)


def _activation_backward_(grad: torch.Tensor, h: torch.Tensor, kind: str) -> torch.Tensor:
    """grad · act'(h), written into grad (a fresh buffer of the caller's): no second (N, 4D) tensor."""
    if kind == "quick_gelu":  # d/dh h·σ(ah) = σ(ah)·(1 + a·h·(1 − σ(ah)))
        s = (h * 1.702).sigmoid_()
        return grad.mul_(s.neg().add_(1).mul_(h).mul_(1.702).add_(1).mul_(s))
    return torch.ops.aten.gelu_backward.grad_input(grad, h, approximate=kind, grad_input=grad)


_RECOMPUTE_ROWS = 1024  # tokens; an fp32 ViT-B FFN activation of this many rows is 12 MB, a reusable heap block


class _ActivationThenTwoLinears(torch.autograd.Function):
    """``a = act(h)``; returns ``(linear(a, W, b), linear(a, W_fused, b_fused))`` with W frozen.

    Stores h only (the activation's own backward needs it): a, as large as h, is recomputed in backward,
    ``_RECOMPUTE_ROWS`` rows at a time, for the fused weight's gradient. Everything runs in h's dtype; the
    caller disables autocast.
    """

    @staticmethod
    def forward(ctx, h, kind, weight, bias, fused_weight, fused_bias):
        a = _activate(h, kind)
        ctx.save_for_backward(h, weight, fused_weight)
        ctx.kind = kind
        return frozen_linear(a, weight, bias), F.linear(a, fused_weight, fused_bias)

    @staticmethod
    def backward(ctx, grad_out, grad_fused):
        h, weight, fused_weight = ctx.saved_tensors
        grad_fused = grad_fused.to(h.dtype)
        if grad_out is None:
            grad_a = grad_fused @ fused_weight
        else:  # one GEMM into one buffer of h's size: [dy, dh_fused] · [W; W_fused]
            grad_a = torch.cat([grad_out.to(h.dtype), grad_fused], dim=-1) @ torch.cat([weight, fused_weight])
        # the fused weight's gradient, g_fusedᵀ·a, from a recomputed a few rows at a time: a full (N, 4D) copy
        # would be the largest tensor of the block's backward
        rows_h, rows_g = h.flatten(0, -2), grad_fused.flatten(0, -2)
        grad_fused_weight = sum(g.T @ _activate(part, ctx.kind) for g, part in zip(
            rows_g.split(_RECOMPUTE_ROWS), rows_h.split(_RECOMPUTE_ROWS)))
        grad_fused_bias = rows_g.sum(0)
        return _activation_backward_(grad_a, h, ctx.kind), None, None, None, grad_fused_weight, grad_fused_bias
