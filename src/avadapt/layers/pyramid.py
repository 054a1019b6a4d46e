"""A four-level feature pyramid from maps that all share one stride (a plain ViT's token grids).

ViTDet's simple feature pyramid (Li et al., ECCV 2022) builds strides 4, 8, 16 and 32 from
the stride-16 map of a plain ViT with learned up- and down-sampling only: two 2×2 stride-2 transposed
convolutions (with a LayerNorm and a GELU between them) for ×4, one for ×2, the map itself for ×1 and a 2×2
max-pool for ×½. The channel width halves with each ×2, as there. Here each level may take its own map (DPT's
habit of reading the finest level from an early block and the coarsest from the last one); with one map,
all four levels read it. The patch size does not matter: the levels are the grid ×4, ×2, ×1 and ×½, and a
dense head resizes its output to the input size at the end.

ViTDet's 1×1 and 3×3 output convolutions per level are left to the head that reads the pyramid (the AVS
decoder projects and convolves every level itself).
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm2d
from torch import nn

PYRAMID_SCALES = (4.0, 2.0, 1.0, 0.5)
"""Scale of each level relative to the input grid, finest first."""


def _resampler(dim: int, scale: float) -> tuple[nn.Module, int]:
    """ViTDet's resampling for one scale and the channel width it produces."""
    if scale == 4.0:
        return nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
            LayerNorm2d(dim // 2),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2),
        ), dim // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2), dim // 2
    if scale == 1.0:
        return nn.Identity(), dim
    if scale == 0.5:
        # ceil_mode keeps the last row and column of an odd grid (a 7×7 grid gives 4×4, not 3×3)
        return nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True), dim
    raise ValueError(f"unsupported pyramid scale {scale}; known: {PYRAMID_SCALES}")


class SimpleFeaturePyramid(nn.Module):
    """(N, D, h, w) maps of one stride → four maps at the grid ×4, ×2, ×1 and ×½, widths D/4, D/2, D, D.

    dim: channel width D of the input maps (divisible by 4).
    ``out_dims``: the width of each level, finest first.
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim % 4:
            raise ValueError(f"the simple feature pyramid halves the width twice; {dim} is not divisible by 4")
        resamplers, widths = zip(*(_resampler(dim, scale) for scale in PYRAMID_SCALES))
        self.resamplers = nn.ModuleList(resamplers)
        self.out_dims: tuple[int, ...] = tuple(widths)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """maps: one (N, D, h, w) map per level (the same tensor may stand for several) → one per level."""
        if len(maps) != len(self.resamplers):
            raise ValueError(f"expected {len(self.resamplers)} maps, one per level, got {len(maps)}")
        return [resample(x) for resample, x in zip(self.resamplers, maps)]
