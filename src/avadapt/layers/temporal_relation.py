"""Cross-modal temporal relations over per-segment audio and visual vectors, after the backbone.

DG-SCT's paper draws its temporal attention inside the adapters; its code applies it after the backbone, as
CMRAN (Xu et al., ACM MM 2020) and CMBS (Xia & Zhao, CVPR 2022) do: each modality's sequence of T segment
vectors is projected, run through a BiLSTM, related to itself by a self-attention encoder and to the other
modality by a cross-attention decoder, and re-weighted by a sigmoid gate computed from the other modality.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TemporalRelationOutput:
    """video, audio: (B, T, d) the gated cross-modal sequences. av_gate: (B, T) the product of the audio and
    visual gates g_a·g_v, in (0, 1): how much both modalities find segment t relevant (CMBS trains it against
    the event mask)."""

    video: torch.Tensor
    audio: torch.Tensor
    av_gate: torch.Tensor


class CrossModalRelationLayer(nn.Module):
    """CMRAN's cross-modal relation attention: the query sequence attends over the other modality's sequence
    *and itself* (keys and values are [memory; query] along time), then a ReLU FFN; post-norm residuals,
    as ``nn.TransformerEncoderLayer``'s defaults.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query: (B, T, d), memory: (B, T', d) → (B, T, d)."""
        context = torch.cat([memory, query], dim=1)  # (B, T' + T, d)
        attended = self.attention(query, context, context, need_weights=False)[0]
        x = self.norm1(query + self.dropout1(attended))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class TemporalRelationModule(nn.Module):
    """DG-SCT's post-backbone temporal module (its ``TemporalAttention``), CMRAN-style.

    With v, a the per-segment visual and audio vectors (B, T, D_v), (B, T, D_a):

    1. projections: v ← Dropout(ReLU(Linear_{D_v→P_v} v)), a ← Linear_{D_a→P_a} a (P_v = 512, P_a = 128);
    2. BiLSTMs: audio with d/2 units a direction (→ d), video with d units a direction (→ 2d), as the
       reference sizes them;
    3. encoders: Linear to d, then ``encoder_layers`` self-attention layers (h heads, FFN f) per modality:
       e_v, e_a;
    4. decoders: Linear to d, then one cross-modal relation layer (:class:`CrossModalRelationLayer`):
       v_q = Dec_v(v, e_a), a_q = Dec_a(a, e_v);
    5. gates g_a = σ(Linear_{d→1} e_a), g_v = σ(Linear_{d→1} e_v), and
       v_out = v_q·(1 + γ·g_a), a_out = a_q·(1 + γ·g_v).

    γ (``gate_scale``) is 0.1 for AVE and 0.05 for AVS / AVVP in the reference; γ = 0 leaves v_q, a_q as they
    are. The LSTMs' dropout of the reference is left out: with one layer PyTorch applies none.
    """

    def __init__(self, video_dim: int, audio_dim: int, video_projection_dim: int = 512,
                 audio_projection_dim: int = 128, dim: int = 256, heads: int = 4, ffn_dim: int = 1024,
                 encoder_layers: int = 2, gate_scale: float = 0.1, projection_dropout: float = 0.2,
                 dropout: float = 0.1):
        super().__init__()
        if dim % 2:
            raise ValueError(f"the audio BiLSTM has dim / 2 units a direction: dim must be even, got {dim}")
        self.gate_scale = gate_scale
        self.video_projection = nn.Sequential(nn.Linear(video_dim, video_projection_dim), nn.ReLU(),
                                              nn.Dropout(projection_dropout))
        self.audio_projection = nn.Linear(audio_dim, audio_projection_dim)
        self.video_lstm = nn.LSTM(video_projection_dim, dim, batch_first=True, bidirectional=True)  # → 2d
        self.audio_lstm = nn.LSTM(audio_projection_dim, dim // 2, batch_first=True, bidirectional=True)  # → d

        def encoder(width: int) -> nn.Sequential:
            layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout=dropout, batch_first=True)
            stack = nn.TransformerEncoder(layer, encoder_layers, enable_nested_tensor=False)
            return nn.Sequential(nn.Linear(width, dim), stack)

        self.video_encoder, self.audio_encoder = encoder(2 * dim), encoder(dim)
        self.video_query, self.audio_query = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.video_decoder = CrossModalRelationLayer(dim, heads, ffn_dim, dropout)
        self.audio_decoder = CrossModalRelationLayer(dim, heads, ffn_dim, dropout)
        self.video_gate, self.audio_gate = nn.Linear(dim, 1), nn.Linear(dim, 1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> TemporalRelationOutput:
        """video: (B, T, D_v), audio: (B, T, D_a) → gated (B, T, d) sequences and the (B, T) gate product."""
        video = self.video_lstm(self.video_projection(video))[0]  # (B, T, 2d)
        audio = self.audio_lstm(self.audio_projection(audio))[0]  # (B, T, d)
        video_encoded, audio_encoded = self.video_encoder(video), self.audio_encoder(audio)  # (B, T, d) each
        video_query = self.video_decoder(self.video_query(video), audio_encoded)  # (B, T, d)
        audio_query = self.audio_decoder(self.audio_query(audio), video_encoded)  # (B, T, d)
        audio_gate = torch.sigmoid(self.audio_gate(audio_encoded))  # (B, T, 1)
        video_gate = torch.sigmoid(self.video_gate(video_encoded))  # (B, T, 1)
        return TemporalRelationOutput(
            video=video_query * (1 + self.gate_scale * audio_gate),
            audio=audio_query * (1 + self.gate_scale * video_gate),
            av_gate=(audio_gate * video_gate).squeeze(-1),
        )
