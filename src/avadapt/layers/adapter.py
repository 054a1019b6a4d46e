"""The bottleneck adapter (Houlsby et al. 2019; AIM; STG-CMA's T-Adapter and AV-Adapter halves)."""

from __future__ import annotations

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """``up(act(down(x)))`` with a zero-initialised up-projection.

    The zero up-projection (weight and bias) makes the adapter output exactly 0 at initialisation, so
    the adapted model starts as the frozen backbone (PEFT/LoRA convention; STG-CMA code: W2 zero-init,
    W1 trunc-normal std 0.02). ``compress``/``expand`` are exposed separately because the AV-Adapter
    exchanges information between modalities in the compressed space, between the two halves.
    There is no inner skip connection: callers add the residual themselves.
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        if hidden_dim < 1:
            raise ValueError(f"adapter hidden width must be ≥ 1, got {hidden_dim} for dim {dim}")
        self.down = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden_dim, dim)
        nn.init.trunc_normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.down(x))

    def expand(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.compress(x))
