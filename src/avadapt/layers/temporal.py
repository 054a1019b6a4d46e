"""Re-using a per-frame (spatial) operation along the time axis."""

from __future__ import annotations

from collections.abc import Callable

import torch

from avadapt.kernels import rebuilt_in_backward


def along_time(fn: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, num_frames: int,
               store_frame_layout: bool = False) -> torch.Tensor:
    """Apply ``fn`` to each token position's sequence over time, and return tokens in frame layout.

    tokens: (B·T, N, D), grouped frame by frame. ``fn`` sees (B·N, T, D): N sequences of length T per
    clip, so a frozen spatial attention becomes a temporal one (STG-CMA Eq. 3; AIM). It may return another
    width (B·N, T, D'), e.g. an adapter's bottleneck, which is cheaper to bring back to frame layout.

    store_frame_layout: where ``fn`` keeps its input for backward (a frozen LayerNorm does), keep ``tokens``
    instead and redo the time-layout copy in backward; pays off when the caller keeps ``tokens`` anyway.
    """
    bt, n, d = tokens.shape
    b = bt // num_frames

    def by_position() -> torch.Tensor:
        return tokens.view(b, num_frames, n, d).transpose(1, 2).reshape(b * n, num_frames, d)  # (B*N, T, D)

    sequences = by_position()
    with rebuilt_in_backward(sequences, by_position if store_frame_layout and torch.is_grad_enabled() else None):
        out = fn(sequences)
    width = out.shape[-1]
    return out.view(b, n, num_frames, width).transpose(1, 2).reshape(bt, n, width)  # (B*T, N, D')
