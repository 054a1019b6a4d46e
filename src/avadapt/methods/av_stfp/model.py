"""AV-STFP: spatial, temporal and fusion prompts that let a frozen image ViT watch and hear.

**Our design.** "Prompt Image to Watch and Hear" (BMVC 2025) has no public code; its poster names three
prompt types and where they go. Each choice below, and why:

1. *Spatial-aware prompts* (VPT-deep, Jia et al., ECCV 2022): ``num_spatial_prompts`` tokens per layer and
   stream, placed after the class token of every frame's (and every spectrogram segment's) sequence and
   replaced by the next layer's own prompts. They steer the frozen spatial attention over one patch grid;
   one set per stream, because a frame and a spectrogram are different kinds of image.
2. *Temporal-aware key–value prompts* ("along the time axis, into K/V"): an image ViT sees one frame, so time
   has to enter through its attention. For segment t, the keys and values are extended by the clip's
   timeline, built from the T class tokens entering the layer (same stream, same clip), each plus a learnt
   time code e_τ, through the frozen norm1 and K/V projections. ``timeline="differences"`` (the default) gives
   segment t the timeline *as seen from t*, class_τ − class_t + e_τ: what the clip shares in every segment
   (scene, lighting, recording conditions) cancels, and the frozen LayerNorm scales what is left, so a small
   change between seconds (an object that appears, a sound that starts) is as loud in the attention as the
   content itself; at τ = t only the time code remains, a learnt "now" token. ``timeline="class_tokens"``
   gives every segment the same timeline, class_τ + e_τ, extra keys in the distribution the attention was
   trained on; but a token averaged with its neighbours' summaries blends with them, while a difference keeps
   apart what one second has and the others lack. Only the time codes are learnt (T × D per layer and
   stream, zero-initialised); the content is the frozen model's own summary. Cost: T extra keys per
   sequence (10 next to CLIP-B/16's 197 tokens). It is computed by running the frozen attention over
   [sequence; timeline] and dropping the timeline's outputs, which is exactly widening K/V and needs only
   timm's public forward.
3. *Multimodal fusion prompts*: ``num_fusion_prompts`` tokens per layer and stream, after the spatial prompts.
   What the audio stream's fusion tokens hold after layer l (they attended over that segment's audio tokens)
   is added, times a learnt scalar gate (zero-initialised, one per layer and receiving stream), to the video
   stream's layer-(l+1) fusion prompts, and vice versa: the streams exchange a few tokens per layer, a
   bottleneck in the spirit of MBT (Nagrani et al., NeurIPS 2021) with no projection, because both streams
   live in the same frozen model's token space. Layer 1 has nothing to exchange yet.

**Parameters**: (T + n_s + n_f) × D + 1 (the gate) per layer and prompted stream. Defaults T = 10, n_s = 4, n_f = 1, both
streams: 30·D per layer, i.e. 276,480 on CLIP ViT-B/16 (12 × 768) and 737,280 on ViT-L/14 (24 × 1024); with
the AVE head (801,821 / 1,063,965) and the 2 gates per layer, 1,078,325 ≈ 1.08M and 1,801,293 ≈ 1.80M
trainable, against the poster's
"about 1.1M" and "about 1.8M": both agree at the poster's precision. No single per-layer prompt count fits
both exactly: 32·D per layer gives 1.10M on B/16 but 1.85M on L/14.

**At initialisation: the frozen backbone plus prompts.** The zero gates keep the two streams apart at step 0,
so each stream is the frozen backbone reading its own prompts; the exchange opens as the gates learn. Prompts
themselves are extra tokens and extra keys that every attention reads, so the output differs from the frozen
backbone's from step 0: unlike an adapter's up-projection, a prompt cannot be zero-initialised away (a zero
key still takes softmax mass, a zero value dilutes the others). With all three prompt types off the model is
the frozen backbone exactly.

**ViT only**: spatial prompts are tokens of a global attention; Swin's fixed windows have no place for them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avadapt._registry import METHODS
from avadapt.backbones import Backbone
from avadapt.methods.av_stfp.config import AVSTFPConfig
from avadapt.methods.base import BRANCHES, AVMethod
from avadapt.types import ParameterGroup

OTHER_MODALITY = {"video": "audio", "audio": "video"}


class LayerPrompts(nn.Module):
    """The prompts of one layer, per prompted stream: spatial tokens, fusion tokens, time codes of the timeline, and
    per prompt type one gate per attention head (zero at initialisation)."""

    def __init__(self, dim: int, heads: int, modalities: tuple[str, ...], config: AVSTFPConfig, fusion: bool,
                 init_range: float):
        super().__init__()

        def tokens(count: int) -> nn.ParameterDict:
            return nn.ParameterDict({m: nn.Parameter(torch.empty(count, dim).uniform_(-init_range, init_range))
                                     for m in modalities})

        def gates(size: int) -> nn.ParameterDict:
            return nn.ParameterDict({m: nn.Parameter(torch.zeros(size)) for m in modalities})

        gated = config.prompt_attention == "gated"
        self.spatial = tokens(config.num_spatial_prompts) if config.spatial_prompts else None
        self.fusion = tokens(config.num_fusion_prompts) if fusion else None
        self.time_codes = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(config.num_frames, dim)) for m in modalities}) if config.temporal_prompts else None
        self.spatial_gates = gates(heads) if gated and self.spatial is not None else None
        self.temporal_gates = gates(heads) if gated and self.time_codes is not None else None
        # how much of the other stream's fusion tokens a stream receives (0 at init)
        self.fusion_gates = gates(heads if gated else 1) if fusion else None


@METHODS.register("av_stfp")
class AVSTFP(AVMethod):
    """Spatial-temporal-fusion prompting of a frozen ViT shared by audio and video (see the module docstring)."""

    config_class = AVSTFPConfig

    def __init__(self, backbone: Backbone, config: AVSTFPConfig):
        if backbone.family != "vit":
            raise ValueError(f"AV-STFP prepends prompt tokens to each frame's global attention; {backbone.name} is "
                             f"a {backbone.family} backbone (windowed attention). Use a ViT, e.g. CLIP ViT-B/16.")
        super().__init__(backbone, config.branches, config.num_frames)
        self.config = config
        self.prompted = tuple(m for m in self.modalities if m in BRANCHES[config.prompted])
        fusion = config.fusion_prompts and len(self.prompted) == 2
        # VPT's initialisation: uniform with the Xavier range of a patch-embedding-sized fan.
        patch_area = math.prod(backbone.patch_size)
        init_range = math.sqrt(6.0 / (3 * patch_area + backbone.embed_dim))
        self.layers = nn.ModuleList(
            LayerPrompts(backbone.embed_dim, handle.num_heads, self.prompted, config, fusion, init_range)
            for handle in backbone.blocks)
        backbone.set_trainable(config.full_finetune)

    def parameter_groups(self) -> list[ParameterGroup]:
        """Prompts, time codes and gates at ``prompt_lr_factor`` × the base lr; fine-tuned backbone weights at it."""
        return [ParameterGroup("prompts", list(self.layers.parameters()), self.config.prompt_lr_factor),
                ParameterGroup("backbone", [p for p in self.backbone.parameters() if p.requires_grad])]

    def _timeline(self, prompts: LayerPrompts, modality: str, x: torch.Tensor) -> torch.Tensor:
        """The clip's timeline as segment t reads it, (B·T, T, D), from the class tokens of x (B·T, 1 + N, D)."""
        t = self.num_frames
        classes = x[:, 0].view(-1, t, x.shape[-1])  # (B, T, D)
        timeline = classes.unsqueeze(1).expand(-1, t, -1, -1)  # (B, T, T, D): [b, t, tau] = class_tau
        if self.config.timeline == "differences":
            timeline = timeline - classes.unsqueeze(2)  # class_tau - class_t
        return (timeline + prompts.time_codes[modality].to(x.dtype)).flatten(0, 1)  # (B*T, T, D)

    def _layer(self, handle, prompts: LayerPrompts, modality: str, x: torch.Tensor,
               received: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One frozen block on a prompted stream: x (B·T, 1 + N, D) → same, and the fusion tokens' outputs."""
        if self.config.prompt_attention == "gated":
            return self._gated_layer(handle, prompts, modality, x, received)
        s = x.shape[0]
        parts = [x[:, :1]]  # class token
        if prompts.spatial is not None:
            parts.append(prompts.spatial[modality].to(x.dtype).expand(s, -1, -1))  # (B*T, n_s, D)
        if prompts.fusion is not None:
            fusion = prompts.fusion[modality].to(x.dtype).expand(s, -1, -1)  # (B*T, n_f, D)
            if received is not None:
                fusion = fusion + prompts.fusion_gates[modality].to(x.dtype) * received
            parts.append(fusion)
        num_prompts = sum(p.shape[1] for p in parts) - 1
        seq = torch.cat([*parts, x[:, 1:]], dim=1)  # (B*T, 1 + n_s + n_f + N, D)
        length = seq.shape[1]
        if prompts.time_codes is not None:
            timeline = self._timeline(prompts, modality, x)
            attended = handle.attention(torch.cat([seq, timeline], dim=1))[:, :length]  # timeline outputs dropped
        else:
            attended = handle.attention(seq)
        seq = seq + attended
        seq = seq + handle.ffn(seq)
        fusion_out = None
        if prompts.fusion is not None:
            start = 1 + (prompts.spatial[modality].shape[0] if prompts.spatial is not None else 0)
            fusion_out = seq[:, start:1 + num_prompts]  # (B*T, n_f, D)
        return torch.cat([seq[:, :1], seq[:, 1 + num_prompts:]], dim=1), fusion_out

    def _gated_layer(self, handle, prompts: LayerPrompts, modality: str, x: torch.Tensor,
                     received: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One frozen block on a prompted stream, each prompt type read in a softmax of its own and added per head
        through its gate: x (B·T, 1 + N, D) → same, and the fusion tokens' outputs (B·T, n_f, D)."""
        attention = handle.attention
        s, length = x.shape[:2]
        queries = x
        if prompts.fusion is not None:  # the fusion tokens read the segment: queries, not keys
            queries = torch.cat([x, prompts.fusion[modality].to(x.dtype).expand(s, -1, -1)], dim=1)
        q, k, v = attention.heads(queries)  # (B*T, H, 1 + N [+ n_f], d)
        u = attention.attend(q, k[:, :, :length], v[:, :, :length])  # the frozen attention, unchanged
        extra = []
        if prompts.spatial is not None:
            extra.append((prompts.spatial[modality].to(x.dtype)[None], prompts.spatial_gates[modality]))
        if prompts.time_codes is not None:
            extra.append((self._timeline(prompts, modality, x), prompts.temporal_gates[modality]))
        if received is not None:
            extra.append((received, prompts.fusion_gates[modality]))
        for tokens, gate in extra:
            _, pk, pv = attention.heads(tokens)  # (1 or B*T, H, P, d)
            read = attention.attend(q, pk.expand(s, -1, -1, -1), pv.expand(s, -1, -1, -1))  # (B*T, H, L, d)
            u = u + gate.to(u.dtype).view(1, -1, 1, 1) * read
        seq = queries + attention.output(u)
        seq = seq + handle.ffn(seq)
        return seq[:, :length], (seq[:, length:] if prompts.fusion is not None else None)

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        tokens = {m: self.backbone.pre_norm(x) for m, x in tokens.items()}
        exchanged: dict[str, torch.Tensor] = {}  # fusion-token outputs of the previous layer, per stream

        def prompted_layer(index: int, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            """Layer ``index`` on every stream: (B·T, 1 + N, D) in and out, the prompts' outputs dropped."""
            nonlocal exchanged
            handle, prompts = self.backbone.blocks[index], self.layers[index]
            updated: dict[str, torch.Tensor] = {}
            outputs: dict[str, torch.Tensor] = {}
            for m, x in tokens.items():
                if m not in self.prompted:
                    updated[m] = handle.block(x)
                    continue
                updated[m], fusion_out = self._layer(handle, prompts, m, x, exchanged.get(OTHER_MODALITY[m]))
                if fusion_out is not None:
                    outputs[m] = fusion_out
            exchanged = outputs
            return updated

        return self.run_blocks(tokens, prompted_layer)
