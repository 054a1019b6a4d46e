"""The blocks of AVSBench's segmentation decoder (Zhou et al., ECCV 2022), which LAVISH, DG-SCT
and STG-CMA reuse for audio-visual segmentation on top of their adapted backbones.

* :class:`DilatedConvSum`: four dilated 3×3 convolutions summed (AVSBench's ``Classifier_Module``, DeepLab-v2's
  ASPP without the branch outputs kept apart): brings every level to the decoder width.
* :class:`TPAVI`: the temporal pixel-wise audio-visual interaction, a non-local block over the T×H×W positions of
  a clip whose keys come from the audio of each frame.
* :class:`ResidualConvUnit` and :class:`FeatureFusionBlock`: DPT's refinement path (Ranftl et al., ICCV 2021),
  coarse to fine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DILATIONS = (3, 6, 12, 18)
"""Dilations of the four branches of AVSBench's ``Classifier_Module`` (padding = dilation: same-size output)."""


class DilatedConvSum(nn.Module):
    """(N, C_in, h, w) → (N, C_out, h, w): Σ_d conv3×3_d(x) over the dilations d, each with its own bias.

    Weights start as AVSBench's, drawn from N(0, 0.01²); biases keep PyTorch's default.
    """

    def __init__(self, in_dim: int, out_dim: int, dilations: tuple[int, ...] = DILATIONS):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=d, dilation=d) for d in dilations)
        for branch in self.branches:
            nn.init.normal_(branch.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class ResidualConvUnit(nn.Module):
    """x ↦ r + conv(ReLU(conv(r))) with r = ReLU(x): DPT's unit, as AVSBench runs it.

    DPT writes ``out = relu(x); …; return out + x`` with an in-place ReLU, so the skip carries the rectified
    input too; this unit says so explicitly, which gives the reference's numbers without modifying its input.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FeatureFusionBlock(nn.Module):
    """One step of the coarse-to-fine path: (coarser path output + refined lateral map) → refined → upsampled.

    ``forward(x, lateral, size)``: x + lateral_unit(lateral) (x alone for the coarsest level), then
    output_unit, then bilinear resizing (``align_corners=True``) to ``size``, the next finer level's grid
    (twice the grid for the finest level).

    The coarsest level has no lateral input, so its ``lateral_unit`` never runs; AVSBench builds every block
    alike, and the unit is kept so that the decoder's parameters (the 21.2M STG-CMA reports for its Swin-L
    AVS decoder) and its state dict have the reference's shape.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.lateral_unit = ResidualConvUnit(dim)
        self.output_unit = ResidualConvUnit(dim)

    def forward(self, x: torch.Tensor, lateral: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if lateral is not None:
            x = x + self.lateral_unit(lateral)
        x = self.output_unit(x)
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class TPAVI(nn.Module):
    """Temporal pixel-wise audio-visual interaction (AVSBench's TPAVI module): a dot-product non-local block
    whose queries are the clip's visual positions and whose keys are the audio of each position's frame.

    With x the (B, C, T, H, W) visual map, a_t the audio of frame t aligned to C channels (``align_audio``) and
    N = T·H·W positions, each position i of frame t(i) receives

        y_i = (1/N) Σ_j ⟨θ(x_i), φ(a_t(j))⟩ g(x_j),    z = LayerNorm(x + BN(W_z(y))),

    θ, φ, g, W_z: 1×1×1 convolutions (C → C/2; W_z: C/2 → C, with its BatchNorm ``out_projection``).
    AVSBench broadcasts a_t over the H·W positions of its frame and forms the N × N affinity; since
    φ(a_t(j)) is the same for all j of one frame, the sum regroups as Σ_t ⟨θ(x_i), φ(a_t)⟩ Σ_{j ∈ frame t}
    g(x_j): the same values from an N × T affinity, which keeps a 5-frame 56×56 stage at 15,680 × 5 entries
    instead of 15,680².

    The BatchNorm after W_z starts with zero weight and bias, so at initialisation z = LayerNorm(x): the block
    does not depend on the audio until its BatchNorm has trained.

    forward(x, audio): x (B, C, T, H, W), audio (B, T, audio_dim) → z (B, C, T, H, W) and the aligned audio
    (B, T, C), which the masked audio-visual KL term compares with the masked visual map.
    """

    def __init__(self, dim: int, audio_dim: int = 128, inner_dim: int | None = None):
        super().__init__()
        inner_dim = inner_dim or max(dim // 2, 1)
        self.align_audio = nn.Linear(audio_dim, dim)
        self.theta = nn.Conv3d(dim, inner_dim, kernel_size=1)
        self.phi = nn.Conv3d(dim, inner_dim, kernel_size=1)
        self.g = nn.Conv3d(dim, inner_dim, kernel_size=1)
        self.out_projection = nn.Sequential(nn.Conv3d(inner_dim, dim, kernel_size=1), nn.BatchNorm3d(dim))
        nn.init.zeros_(self.out_projection[1].weight)
        nn.init.zeros_(self.out_projection[1].bias)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, frames, height, width = x.shape
        if audio.shape[:2] != (batch, frames):
            raise ValueError(f"audio must be (B={batch}, T={frames}, C), got {tuple(audio.shape)}")
        aligned = self.align_audio(audio)  # (B, T, C)
        keys = self.phi(aligned.transpose(1, 2)[..., None, None]).flatten(2)  # (B, C', T)
        queries = self.theta(x).flatten(2)  # (B, C', T·H·W)
        frame_values = self.g(x).sum(dim=(-2, -1))  # (B, C', T): g summed over each frame's positions
        affinity = queries.transpose(1, 2) @ keys  # (B, T·H·W, T)
        y = affinity @ frame_values.transpose(1, 2) / (frames * height * width)  # (B, T·H·W, C')
        y = y.transpose(1, 2).reshape(batch, -1, frames, height, width)  # (B, C', T, H, W)
        z = x + self.out_projection(y)  # (B, C, T, H, W)
        z = self.norm(z.movedim(1, -1)).movedim(-1, 1)  # LayerNorm over channels
        return z, aligned
