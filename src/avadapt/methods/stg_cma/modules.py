"""One STG-CMA block: temporal, spatial and global adaptation around a frozen ViT block."""

from __future__ import annotations

import torch
from torch import nn

from avadapt import kernels
from avadapt.backbones import BlockHandle
from avadapt.layers import BottleneckAdapter, CrossModalGates, StochasticDepth, along_time
from avadapt.methods.stg_cma.config import STGCMAConfig


def _per_modality_adapters(modalities: tuple[str, ...], dim: int, hidden: int, enabled: bool) -> nn.ModuleDict | None:
    if not enabled:
        return None
    return nn.ModuleDict({modality: BottleneckAdapter(dim, hidden) for modality in modalities})


class STGCMABlock(nn.Module):
    """STG-CMA's three steps around one frozen block, both modalities at once.

    With A = frozen norm1 + self-attention, F = frozen norm2 + MLP, and per modality m an adapter
    W_up · GELU(W_down · ·):

    1. temporal (per modality): x_m ← x_m + DP(W_up · GELU(W_down · A(x_m) along time)), the frozen attention
       re-run over each token position's T-long sequence, class token included; no skip in the T-Adapter.
       DP (stochastic depth) drops the adapted residual of a token position over all T segments at once, as
       the reference's Swin code applies it to its (B·N, T, D) sequences (its CLIP code applies timm's DropPath
       to sequence-first (N, B·T, D) tokens: one factor per token position for the whole batch); only here,
       never on frozen computation.
    2. spatial (cross-modal): S_m = A(x_m) per segment; H_m = GELU(W_down · S_m); CAIM between the segment's
       H_v and H_a (``CrossModalGates``); x_m ← x_m + S_m + W_up · H_m.
    3. global (cross-modal): F_m = F(x_m); the same CAIM with the same gates; x_m ← x_m + F_m + W_up · H_m.

    Zero-initialised up-projections and gates make the block return the frozen block's output at init.
    ``kernels.branch_and_projection`` computes (S_m, W_down · S_m) together, from what backward keeps anyway.
    """

    def __init__(self, handle: BlockHandle, dim: int, modalities: tuple[str, ...], config: STGCMAConfig,
                 drop_path: float):
        super().__init__()
        self.handle = handle
        self.num_frames = config.num_frames
        self.recompute_temporal_attention = config.recompute_frozen and not config.activation_checkpointing
        # activation checkpointing replaces saved tensors by its own means
        self.rebuild_sums_in_backward = not config.activation_checkpointing
        hidden = max(1, round(config.bottleneck_ratio * dim))
        self.temporal_adapters = _per_modality_adapters(modalities, dim, hidden, config.temporal_adaptation)
        self.spatial_adapters = _per_modality_adapters(modalities, dim, hidden, config.spatial_adaptation)
        self.global_adapters = _per_modality_adapters(modalities, dim, hidden, config.global_adaptation)
        exchanges = len(modalities) == 2 and config.fusion != "none" and (
            config.spatial_adaptation or config.global_adaptation)
        self.gates = CrossModalGates(config.fusion) if exchanges else None
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """tokens: (B·T, N_m, D) per modality, grouped frame by frame."""
        rebuild = {}
        if self.temporal_adapters is not None:
            tokens, rebuild = self.temporal_step(tokens)
        spatial = self.adapted_branch(self.handle.attention, tokens, self.spatial_adapters, rebuild)
        tokens = {m: x + spatial[m] for m, x in tokens.items()}
        ffn = self.adapted_branch(self.handle.ffn, tokens, self.global_adapters, {})
        return {m: x + ffn[m] for m, x in tokens.items()}

    def temporal_step(self, tokens: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
        """Step 1: x_m + DP(T-Adapter(A(x_m) along time)), and how to rebuild each sum in backward.

        The spatial step's frozen norm would keep the sum (as large as x) for backward; the returned recipes
        redo it from x and the T-Adapter's bottleneck, which autograd keeps anyway (``kernels.rebuilt_in_backward``).
        """
        rebuild = torch.is_grad_enabled() and self.rebuild_sums_in_backward
        adapted, recipes = {}, {}
        for m, x in tokens.items():
            adapter = self.temporal_adapters[m]

            def bottleneck(seq: torch.Tensor, adapter: BottleneckAdapter = adapter) -> torch.Tensor:
                """(B·N, T, D) → GELU(W_down · A(seq)), (B·N, T, r)."""
                return adapter.act(kernels.projection_of_branch(
                    self.handle.attention, seq, adapter.down, recompute=self.recompute_temporal_attention))

            # the bottleneck is brought back to frame layout at its width r, cheaper than D
            hidden = along_time(bottleneck, x, self.num_frames, store_frame_layout=rebuild)  # (B*T, N, r)
            mask = position_mask(self.stochastic_depth, x, self.num_frames)
            adapted[m] = StochasticDepth.add(x, adapter.up(hidden), mask)
            if rebuild:
                recipes[m] = lambda x=x, hidden=hidden, adapter=adapter, mask=mask: StochasticDepth.add(
                    x, adapter.up(hidden), mask)
        return adapted, recipes

    def adapted_branch(self, branch, tokens: dict[str, torch.Tensor], adapters: nn.ModuleDict | None,
                       recipes: dict) -> dict[str, torch.Tensor]:
        """Steps 2 and 3: B_m + W_up · CAIM(GELU(W_down · B_m)) for the frozen branch B (A or F); the frozen
        branch alone where the step is off. recipes: how to rebuild x_m in backward (``temporal_step``)."""
        outputs, hidden = {}, {}
        for m, x in tokens.items():
            with kernels.rebuilt_in_backward(x, recipes.get(m)):
                if adapters is None:
                    outputs[m] = branch(x)
                else:
                    outputs[m], hidden[m] = kernels.branch_and_projection(branch, x, adapters[m].down)
        if adapters is None:
            return outputs
        hidden = {m: adapters[m].act(h) for m, h in hidden.items()}  # (B*T, N_m, r)
        if self.gates is not None:
            hidden["video"], hidden["audio"] = self.gates(hidden["video"], hidden["audio"])
        return {m: y + adapters[m].up(hidden[m]) for m, y in outputs.items()}


def position_mask(stochastic_depth: StochasticDepth, tokens: torch.Tensor, num_frames: int) -> torch.Tensor | None:
    """Stochastic depth's factors for tokens (B·T, N, D) drawn per clip and token position and shared by the
    clip's T segments: (B·T, N, 1); None when nothing drops."""
    bt, n, d = tokens.shape
    mask = stochastic_depth.sample_mask(tokens.view(-1, num_frames, n, d)[:, 0], sample_dims=2)  # (B, N, 1)
    if mask is None:
        return None
    return mask.unsqueeze(1).expand(-1, num_frames, -1, -1).reshape(bt, n, 1)
