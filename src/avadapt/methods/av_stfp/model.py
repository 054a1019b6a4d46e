"""AV-STFP: spatial, temporal and fusion prompts that let a frozen image ViT watch and hear.

**Our design.** "Prompt Image to Watch and Hear" (BMVC 2025) has no public code; its poster names three
prompt types and where they go (spatial-aware prompts, temporal-aware key–value prompts, multimodal fusion
prompts). Everything else is ours; the measured reasons are in docs/methods.md (AV-STFP).

*How the frozen attention reads prompts* (``prompt_attention="gated"``, the default). Each prompt type is a
set of extra keys/values, made by the block's frozen norm1 and K/V projections, that every token of a frame (or
spectrogram segment) reads in a softmax of its own; the result is added to the frozen attention's output per
head, times a gate that starts at zero (the zero-initialised gated attention of LLaMA-Adapter, Zhang et al.,
ICLR 2024). At initialisation the model is the frozen backbone exactly, and the frozen attention over the
frame keeps all of its softmax mass: a prompt adds what it holds without diluting what the pretrained
attention already finds. ``prompt_attention="shared"`` is VPT's way (Jia et al., ECCV 2022): the prompts are
extra tokens and keys in the frozen attention's own softmax, so they change the output from step 0 (a zero key
still takes softmax mass); it trained below the frozen probe on real media, so it is kept as the reference.

1. *Spatial-aware prompts*: ``num_spatial_prompts`` learnt tokens per layer and stream (a frame and a
   spectrogram are different kinds of image), read by every token of every segment.
2. *Temporal-aware key–value prompts* ("along the time axis, into K/V"): an image ViT sees one frame, so time
   has to enter through its attention. Segment t reads the clip's timeline, built from the T class tokens
   entering the layer (same stream, same clip), each plus a learnt time code e_τ. ``timeline="differences"``
   (the default) gives it the timeline *as seen from t*, class_τ − class_t + e_τ: what the clip shares in every
   second (scene, lighting, recording conditions) cancels, and the frozen LayerNorm scales what is left, so a
   change between seconds (an object that appears, a sound that starts) is as visible to the attention as the
   content of a second; at τ = t only the time code remains, a learnt "now" token. ``timeline="class_tokens"``
   gives every segment the same timeline, class_τ + e_τ. Only the time codes are learnt (T × D per layer and
   stream, zero-initialised); the content is the frozen model's own summary.
3. *Multimodal fusion prompts*: ``num_fusion_prompts`` learnt tokens per layer and stream that are queries of
   the frozen block, not keys: they read their segment (and its prompts) through the frozen attention and MLP,
   and at the next layer every token of the *other* stream's same segment reads their outputs as gated
   keys/values. The streams exchange a few tokens per layer, a bottleneck in the spirit of MBT (Nagrani et al.,
   NeurIPS 2021) with no projection, because both streams live in the same frozen model's token space. The last
   layer has no one to send to and the first nothing to receive, so they have no fusion tokens / fusion gates.

**Parameters** per layer and prompted stream: (T + n_s + n_f) × D prompts and 3 × H gates (H heads), less the
last layer's fusion tokens and the first layer's fusion gates. Defaults T = 10, n_s = 4, n_f = 1, both streams,
with the AVE head (801,821 / 1,063,965): 1,077,605 ≈ 1.08M trainable on CLIP ViT-B/16 (12 layers × 768, 12
heads) and 1,801,469 ≈ 1.80M on ViT-L/14 (24 × 1024, 16 heads), against the poster's "about 1.1M" and "about
1.8M". No single per-layer prompt count fits both exactly: 32·D per layer gives 1.10M on B/16 but 1.85M on L/14.

**ViT only**: the prompts are read by a global attention over each frame; Swin's fixed windows have no place
for them, and the gated reading needs timm's plain ``Attention`` (its projections, ``BlockHandle.attention``).
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

    def __init__(self, dim: int, heads: int, modalities: tuple[str, ...], config: AVSTFPConfig, sends: bool,
                 receives: bool, init_range: float):
        super().__init__()

        def tokens(count: int) -> nn.ParameterDict:
            return nn.ParameterDict({m: nn.Parameter(torch.empty(count, dim).uniform_(-init_range, init_range))
                                     for m in modalities})

        def gates(size: int) -> nn.ParameterDict:
            return nn.ParameterDict({m: nn.Parameter(torch.zeros(size)) for m in modalities})

        gated = config.prompt_attention == "gated"
        self.spatial = tokens(config.num_spatial_prompts) if config.spatial_prompts else None
        # fusion tokens where the next layer reads them; gates where the previous layer's arrive
        self.fusion = tokens(config.num_fusion_prompts) if sends else None
        self.time_codes = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(config.num_frames, dim)) for m in modalities}) if config.temporal_prompts else None
        self.spatial_gates = gates(heads) if gated and self.spatial is not None else None
        self.temporal_gates = gates(heads) if gated and self.time_codes is not None else None
        self.fusion_gates = gates(heads if gated else 1) if receives else None


@METHODS.register("av_stfp")
class AVSTFP(AVMethod):
    """Spatial-temporal-fusion prompting of a frozen ViT shared by audio and video (see the module docstring)."""

    config_class = AVSTFPConfig

    def __init__(self, backbone: Backbone, config: AVSTFPConfig):
        if backbone.family != "vit":
            raise ValueError(f"AV-STFP prepends prompt tokens to each frame's global attention; {backbone.name} is "
                             f"a {backbone.family} backbone (windowed attention). Use a ViT, e.g. CLIP ViT-B/16.")
        if config.prompt_attention == "gated" and not all(handle.own_kernels for handle in backbone.blocks):
            raise ValueError(f"AV-STFP's gated prompts read the frozen attention's projections; {backbone.name}'s "
                             "blocks are not timm's plain Attention/Mlp. Use prompt_attention='shared'.")
        super().__init__(backbone, config.branches, config.num_frames)
        self.config = config
        self.prompted = tuple(m for m in self.modalities if m in BRANCHES[config.prompted])
        fusion = config.fusion_prompts and len(self.prompted) == 2
        # VPT's initialisation: uniform with the Xavier range of a patch-embedding-sized fan.
        patch_area = math.prod(backbone.patch_size)
        init_range = math.sqrt(6.0 / (3 * patch_area + backbone.embed_dim))
        depth = len(backbone.blocks)
        # gated: a layer's fusion tokens are read only by the next layer; shared: they are keys of their own too
        sends = [fusion and (index < depth - 1 or config.prompt_attention == "shared") for index in range(depth)]
        self.layers = nn.ModuleList(
            LayerPrompts(backbone.embed_dim, handle.num_heads, self.prompted, config, sends[index],
                         index > 0 and sends[index - 1], init_range)
            for index, handle in enumerate(backbone.blocks))
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
