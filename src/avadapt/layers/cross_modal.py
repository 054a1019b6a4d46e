"""Parameter-free cross-modal attention with learnable scalar gates (STG-CMA's CAIM, Eq. 9–10)."""

from __future__ import annotations

import torch
from torch import nn

from avadapt.kernels import scaled_dot_product_attention

FUSION_DIRECTIONS = ("both", "audio_to_visual", "visual_to_audio", "none")


def parameter_free_cross_attention(query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """``softmax(Q·Cᵀ)·C`` with Q, C the compressed tokens themselves (no projections, no 1/√d).

    Shapes: query (S, Nq, r), context (S, Nc, r) → (S, Nq, r). The official code omits the scaling,
    so ``scale=1`` is passed to the fused kernel instead of writing the softmax by hand.
    """
    return scaled_dot_product_attention(query, context, context, scale=1.0)


class CrossModalGates(nn.Module):
    """One scalar gate per receiving modality, zero-initialised so no information crosses at step 0.

    STG-CMA uses the same pair of gates for the spatial and the global exchange of a block.
    ``fusion`` picks which directions exist (Table 5): ``audio_to_visual`` updates only the visual
    tokens with audio information, ``visual_to_audio`` the converse, ``none`` neither.
    """

    def __init__(self, fusion: str = "both"):
        super().__init__()
        if fusion not in FUSION_DIRECTIONS:
            raise ValueError(f"fusion must be one of {FUSION_DIRECTIONS}, got {fusion!r}")
        self.fusion = fusion
        self.video_gate = nn.Parameter(torch.zeros(1)) if fusion in ("both", "audio_to_visual") else None
        self.audio_gate = nn.Parameter(torch.zeros(1)) if fusion in ("both", "visual_to_audio") else None

    def forward(
        self, video: torch.Tensor | None, audio: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Exchange between compressed tokens of the same segment: video (S, Nv, r), audio (S, Na, r).

        Both updates read the tokens as they were before the exchange.
        """
        if video is None or audio is None:
            return video, audio
        new_video = video
        if self.video_gate is not None:
            new_video = video + self.video_gate.to(video.dtype) * parameter_free_cross_attention(video, audio)
        if self.audio_gate is not None:
            audio = audio + self.audio_gate.to(audio.dtype) * parameter_free_cross_attention(audio, video)
        return new_video, audio
