"""One STG-CMA block: temporal, spatial and global adaptation around a frozen ViT block."""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.layers import DropPath
from torch import nn

from avadapt.backbones import BlockHandle
from avadapt.layers import BottleneckAdapter, CrossModalGates, along_time
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
        hidden = max(1, round(config.bottleneck_ratio * dim))
        self.temporal_adapters = _per_modality_adapters(modalities, dim, hidden, config.temporal_adaptation)
        self.spatial_adapters = _per_modality_adapters(modalities, dim, hidden, config.spatial_adaptation)
        self.global_adapters = _per_modality_adapters(modalities, dim, hidden, config.global_adaptation)
        exchanges = len(modalities) == 2 and config.fusion != "none" and (
            config.spatial_adaptation or config.global_adaptation)
        self.gates = CrossModalGates(config.fusion) if exchanges else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _adapt_jointly(self, tokens: dict[str, torch.Tensor],
                       branch_and_down: Callable[[torch.Tensor, nn.Linear], tuple[torch.Tensor, torch.Tensor]],
                       adapters: nn.ModuleDict) -> dict[str, torch.Tensor]:
        """Tokens (B·T, N, D) per modality → frozen branch + AV-Adapter(branch).

        branch_and_down(x, down) returns the frozen branch output and its adapter's down-projection
        (``BlockHandle.attention_and_down`` / ``ffn_and_down``).
        """
        both = {m: branch_and_down(x, adapters[m].down) for m, x in tokens.items()}
        hidden = {m: adapters[m].act(h) for m, (_, h) in both.items()}  # (B*T, N_m, r)
        if self.gates is not None:
            hidden["video"], hidden["audio"] = self.gates(hidden["video"], hidden["audio"])
        return {m: y + adapters[m].expand(hidden[m]) for m, (y, _) in both.items()}

    def _temporal(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """T-Adapter(A(x) along time), brought back to frame layout at the bottleneck width (cheaper than D)."""
        adapter = self.temporal_adapters[modality]

        def compressed(seq: torch.Tensor) -> torch.Tensor:
            _, pre_hidden = self.handle.attention_and_down(
                seq, adapter.down, need_output=False, recompute=self.recompute_temporal_attention)
            return adapter.act(pre_hidden)

        return adapter.expand(along_time(compressed, x, self.num_frames))

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        handle = self.handle
        if self.temporal_adapters is not None:
            tokens = {m: x + self.drop_path(self._temporal(m, x)) for m, x in tokens.items()}
        if self.spatial_adapters is not None:
            spatial = self._adapt_jointly(tokens, handle.attention_and_down, self.spatial_adapters)
        else:
            spatial = {m: handle.attention(x) for m, x in tokens.items()}
        tokens = {m: x + self.drop_path(spatial[m]) for m, x in tokens.items()}
        if self.global_adapters is not None:
            ffn = self._adapt_jointly(tokens, handle.ffn_and_down, self.global_adapters)
        else:
            ffn = {m: handle.ffn(x) for m, x in tokens.items()}
        return {m: x + self.drop_path(ffn[m]) for m, x in tokens.items()}
