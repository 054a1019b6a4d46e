"""One STG-CMA block: temporal, spatial and global adaptation around a frozen ViT block."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from avadapt.backbones import BlockHandle
from avadapt.layers import (
    BottleneckAdapter,
    CrossModalGates,
    StochasticDepth,
    along_time,
    call_keeping_recipe,
)
from avadapt.methods.stg_cma.config import STGCMAConfig


def _per_modality_adapters(modalities: tuple[str, ...], dim: int, hidden: int, enabled: bool) -> nn.ModuleDict | None:
    if not enabled:
        return None
    return nn.ModuleDict({modality: BottleneckAdapter(dim, hidden) for modality in modalities})


class STGCMABlock(nn.Module):
    """Eq. 1–15 of STG-CMA for one frozen block, both modalities at once.

    1. temporal (per modality): x ← x + DP(T-Adapter(A(x) along time)), A = frozen norm1 + attention re-run
       over each token position's T-long sequence, class token included; no skip inside the T-Adapter.
    2. spatial (cross-modal): S = A(x) per segment; H = GELU(down(S)); CAIM between the segment's compressed
       audio and video tokens; x ← x + DP(S + up(H)).
    3. global (cross-modal): F = frozen norm2 + MLP(x); same CAIM with the same gates; x ← x + DP(F + up(H)).
    Zero-initialised up-projections and gates make the block return the frozen block's output at init.
    """

    def __init__(self, handle: BlockHandle, dim: int, modalities: tuple[str, ...], config: STGCMAConfig,
                 drop_path: float):
        super().__init__()
        self.handle = handle
        self.num_frames = config.num_frames
        self.recompute_temporal_attention = config.recompute_frozen and not config.activation_checkpointing
        # activation checkpointing replaces saved tensors by its own means (``_adapt_temporally``)
        self.rebuild_sums_in_backward = not config.activation_checkpointing
        hidden = max(1, round(config.bottleneck_ratio * dim))
        self.temporal_adapters = _per_modality_adapters(modalities, dim, hidden, config.temporal_adaptation)
        self.spatial_adapters = _per_modality_adapters(modalities, dim, hidden, config.spatial_adaptation)
        self.global_adapters = _per_modality_adapters(modalities, dim, hidden, config.global_adaptation)
        exchanges = len(modalities) == 2 and config.fusion != "none" and (
            config.spatial_adaptation or config.global_adaptation)
        self.gates = CrossModalGates(config.fusion) if exchanges else None
        self.stochastic_depth = StochasticDepth(drop_path)

    def _adapt_jointly(self, tokens: dict[str, torch.Tensor],
                       branch_and_down: Callable[[torch.Tensor, nn.Linear], tuple[torch.Tensor, torch.Tensor]],
                       adapters: nn.ModuleDict,
                       recipes: dict[str, Callable[[], torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Tokens (B·T, N, D) per modality → frozen branch + AV-Adapter(branch).

        branch_and_down(x, down) returns the frozen branch output and its adapter's down-projection
        (``BlockHandle.attention_and_down`` / ``ffn_and_down``); recipes: how to rebuild a modality's tokens
        in backward, for the branch's norm to keep instead of the tokens (see ``_adapt_temporally``).
        """
        both = {m: call_keeping_recipe(partial(branch_and_down, down=adapters[m].down), x, recipes.get(m))
                for m, x in tokens.items()}
        hidden = {m: adapters[m].act(h) for m, (_, h) in both.items()}  # (B*T, N_m, r)
        if self.gates is not None:
            hidden["video"], hidden["audio"] = self.gates(hidden["video"], hidden["audio"])
        return {m: y + adapters[m].expand(hidden[m]) for m, (y, _) in both.items()}

    def _adapt_temporally(self, tokens: dict[str, torch.Tensor]) -> tuple[
            dict[str, torch.Tensor], dict[str, Callable[[], torch.Tensor]]]:
        """x + DP(T-Adapter(A(x) along time)) per modality, and how to rebuild that sum in backward.

        The spatial step's frozen norm would keep the sum (as large as x) for backward; the recipe redoes it
        from x, which the temporal norm keeps instead of its time-layout copy, and the T-Adapter's
        bottleneck, which its up-projection keeps anyway: one token-sized tensor per modality and block
        less, for an r→D matmul in backward. Without grad or under activation checkpointing: no recipes.
        """
        rebuild = torch.is_grad_enabled() and self.rebuild_sums_in_backward
        adapted, recipes = {}, {}
        for m, x in tokens.items():
            adapter = self.temporal_adapters[m]

            def compressed(seq: torch.Tensor, adapter: BottleneckAdapter = adapter) -> torch.Tensor:
                _, pre_hidden = self.handle.attention_and_down(
                    seq, adapter.down, need_output=False, recompute=self.recompute_temporal_attention)
                return adapter.act(pre_hidden)

            # T-Adapter's bottleneck, brought back to frame layout at its width (cheaper than D)
            hidden = along_time(compressed, x, self.num_frames, store_frame_layout=rebuild)  # (B*T, N, r)
            mask = self.stochastic_depth.sample_mask(x)
            adapted[m] = _temporal_sum(x, hidden, adapter, mask)
            if rebuild:
                recipes[m] = partial(_temporal_sum, x, hidden, adapter, mask)
        return adapted, recipes

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        handle = self.handle
        recipes = {}
        if self.temporal_adapters is not None:
            tokens, recipes = self._adapt_temporally(tokens)
        if self.spatial_adapters is not None:
            spatial = self._adapt_jointly(tokens, handle.attention_and_down, self.spatial_adapters, recipes)
        else:
            spatial = {m: call_keeping_recipe(handle.attention, x, recipes.get(m)) for m, x in tokens.items()}
        tokens = {m: self.stochastic_depth(x, spatial[m]) for m, x in tokens.items()}
        if self.global_adapters is not None:
            ffn = self._adapt_jointly(tokens, handle.ffn_and_down, self.global_adapters, {})
        else:
            ffn = {m: handle.ffn(x) for m, x in tokens.items()}
        return {m: self.stochastic_depth(x, ffn[m]) for m, x in tokens.items()}


def _temporal_sum(x: torch.Tensor, hidden: torch.Tensor, adapter: BottleneckAdapter,
                  mask: torch.Tensor | None) -> torch.Tensor:
    """x + DP(up(hidden)): the temporal step's output, in forward and again in backward."""
    return StochasticDepth.add(x, adapter.expand(hidden), mask)

