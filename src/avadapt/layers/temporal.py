"""Re-using a per-frame (spatial) operation along the time axis."""

from __future__ import annotations

from collections.abc import Callable

import torch


def along_time(fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Apply ``fn`` to each token position's sequence over time, and return tokens in frame layout.

    tokens: (B·T, N, D), grouped frame by frame. ``fn`` sees (B·N, T, D): N sequences of length T per
    clip, so a frozen spatial attention becomes a temporal one (STG-CMA Eq. 3; AIM). It may return another
    width (B·N, T, D'), e.g. an adapter's bottleneck, which is cheaper to bring back to frame layout.
    """
    bt, n, d = tokens.shape
    b = bt // num_frames
    by_position = tokens.view(b, num_frames, n, d).transpose(1, 2).reshape(b * n, num_frames, d)  # (B*N, T, D)
    out = fn(by_position)
    width = out.shape[-1]
    return out.view(b, n, num_frames, width).transpose(1, 2).reshape(bt, n, width)  # (B*T, N, D')
