"""A learnt relative position bias over time steps, for attention re-used along the time axis."""

from __future__ import annotations

import torch
from torch import nn


class TemporalRelativePositionBias(nn.Module):
    """Swin's relative position bias in one dimension: a (2T − 1) × heads table indexed by t − τ.

    ``forward()`` returns the additive attention bias (1, heads, T, T) for sequences of T time steps, query step
    t and key step τ: entry [h, t, τ] = table[t − τ + T − 1, h], query minus key as in Swin's own table and in the
    official STG-CMA code's temporal table (``t_relative_coords`` of its Swin model), so a table trained there
    means the same here. Truncated-normal init (std 0.02) as Swin's own tables; STG-CMA's Swin blocks keep one
    table per modality in each temporally adapted block.
    """

    def __init__(self, num_frames: int, num_heads: int):
        super().__init__()
        self.num_frames = num_frames
        self.table = nn.Parameter(torch.zeros(2 * num_frames - 1, num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        steps = torch.arange(num_frames)
        self.register_buffer("index", steps[:, None] - steps[None, :] + num_frames - 1, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table[self.index].permute(2, 0, 1).unsqueeze(0)  # (1, heads, T, T)
