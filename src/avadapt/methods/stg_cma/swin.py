"""STG-CMA on a frozen Swin: per-stage bottlenecks, temporal steps in unshifted blocks, window-paired CAIM.

Which modules exist, worked out from the official code (kaiw7/STG-CMA, its Swin version) and
checked against the authors' counts with the AVE head (concat[a; v] → Linear 512 → Dropout → Linear 29):

* every block, per modality: a spatial AV-Adapter on the window-attention output and a global AV-Adapter
  after the MLP, each ``down: D→r`` and ``up: r→D`` with biases, i.e. 2·D·r + r + D parameters;
* even blocks of each stage only (the unshifted ones by design, ``SwinBlockHandle.shifted_by_design``),
  per modality: a T-Adapter of the same shape plus a temporal relative-position bias of (2T − 1) × heads;
  the last stage of Swin/224 has a 7² grid = one window, so timm (like Microsoft's code) switches its odd
  block's shift off, yet the official code still adapts only block 0 there — counting both blocks would give
  Swin-L Base 19.32M instead of 19.03M;
* one pair of scalar CAIM gates per block when fusion is on (48 parameters on a 24-block Swin, below the
  counts' 0.01M precision; the official AVE script runs ``multimodal``, i.e. without CAIM);
* no temporal embeddings (the official code has them for CLIP only) and a frozen final norm (its trainable
  names list ``ln_post``, a CLIP name; Swin's ``norm`` is not in it). ``tune_final_norm`` defaults to off on
  Swin for that reason; ``tune_final_norm=True`` adds a trainable copy (+3,072 / +2,048 on Swin-L / Swin-B).

Swin-L (widths 192/384/768/1536, depths 2/2/18/2, heads 6/12/24/48), Base ratios [1/2, 1/4, 1/8, 1/16] →
r = 96 in every stage: adapters 17,438,556 + head 1,588,253 = 19,026,809 (paper 19.03M);
Tiny [1/8, 1/8, 1/16, 1/16] → r = 24/48/48/96: 10,152,396 + 1,588,253 = 11,740,649 (11.74M).
Swin-B (128/256/512/1024, heads 4/8/16/32), [1/4, 1/4, 1/8, 1/8] → r = 32/64/64/128:
9,004,584 + 1,063,965 = 10,068,549 (10.07M); [1/8, 1/8, 1/16, 1/16] → r = 16/32/32/64:
4,535,944 + 1,063,965 = 5,599,909 (5.6M). E.g. Swin-L Base stage 3: 18 blocks × 4 adapters × 148,320
+ 9 even blocks × 2 modalities × (148,320 + 19·24) = 13,357,008.
"""

from __future__ import annotations

import torch
from torch import nn

from avadapt.backbones import SwinBackbone, SwinBlockHandle
from avadapt.errors import OptionError
from avadapt.layers import BottleneckAdapter, CrossModalGates, StochasticDepth, along_time
from avadapt.layers.relative_position import TemporalRelativePositionBias
from avadapt.methods.stg_cma.config import STGCMAConfig, parse_ratio
from avadapt.methods.stg_cma.modules import position_mask

# Per-stage bottleneck ratios of the official Swin scripts (STG-CMA AVE: Base / Tiny rows of its table),
# keyed by the width of the first stage: 192 = Swin-L, 128 = Swin-B. Other widths (Swin-T/S, the tiny test
# models) use the Swin-B table; a Swin with fewer than four stages takes the first entries.
SWIN_RATIO_PRESETS: dict[int, dict[str, tuple[str, ...]]] = {
    192: {"base": ("1/2", "1/4", "1/8", "1/16"), "tiny": ("1/8", "1/8", "1/16", "1/16")},
    128: {"base": ("1/4", "1/4", "1/8", "1/8"), "tiny": ("1/8", "1/8", "1/16", "1/16")},
}
DEFAULT_SWIN_PRESETS = SWIN_RATIO_PRESETS[128]


def swin_stage_ratios(backbone: SwinBackbone, config: STGCMAConfig) -> list[float]:
    """Bottleneck ratio of each stage: an explicit ``ratio`` everywhere, else the Swin preset (Base by default)."""
    num_stages = len(backbone.stages)
    if config.ratio is not None:
        return [float(config.ratio)] * num_stages
    presets = SWIN_RATIO_PRESETS.get(backbone.stage_dims[0], DEFAULT_SWIN_PRESETS)
    preset = config.preset or "base"
    if preset not in presets:
        raise OptionError(f"STG-CMA on Swin has presets {sorted(presets)}, not {preset!r}; "
                          "give an explicit ratio instead")
    ratios = presets[preset]
    if num_stages > len(ratios):
        raise ValueError(f"{backbone.name} has {num_stages} stages; the Swin presets cover {len(ratios)}")
    return [parse_ratio(r) for r in ratios[:num_stages]]


def _per_modality(modalities: tuple[str, ...], make, enabled: bool) -> nn.ModuleDict | None:
    return nn.ModuleDict({m: make() for m in modalities}) if enabled else None


class SwinSTGCMABlock(nn.Module):
    """STG-CMA's three steps around one frozen Swin block, both modalities at once.

    1. temporal (even blocks, per modality): the block's frozen norm and window-attention projections run
       over each token position's T-long sequence with a learnt temporal relative-position bias;
       x ← x + DP(T-Adapter(·)), DP dropping a token position over all T segments, as on the ViT.
    2. spatial (cross-modal): S = shifted/masked window attention per segment; H = GELU(down(S)); CAIM pairs
       video window k with audio window k (same grid, same shift: an image region meets a time–frequency
       patch); x ← x + S + up(H).
    3. global (cross-modal): F = MLP branch; CAIM over all tokens of the segment with the same gates;
       x ← x + F + up(H).
    Zero-initialised up-projections and gates make the block return the frozen block's output at init.
    """

    def __init__(self, handle: SwinBlockHandle, modalities: tuple[str, ...], config: STGCMAConfig, hidden: int,
                 drop_path: float):
        super().__init__()
        self.handle = handle
        self.num_frames = config.num_frames
        dim = handle.dim
        temporal = config.temporal_adaptation and not handle.shifted_by_design
        self.temporal_adapters = _per_modality(modalities, lambda: BottleneckAdapter(dim, hidden), temporal)
        self.temporal_position_bias = _per_modality(
            modalities, lambda: TemporalRelativePositionBias(config.num_frames, handle.num_heads), temporal)
        self.spatial_adapters = _per_modality(
            modalities, lambda: BottleneckAdapter(dim, hidden), config.spatial_adaptation)
        self.global_adapters = _per_modality(
            modalities, lambda: BottleneckAdapter(dim, hidden), config.global_adaptation)
        exchanges = len(modalities) == 2 and config.fusion != "none" and (
            config.spatial_adaptation or config.global_adaptation)
        self.gates = CrossModalGates(config.fusion) if exchanges else None
        self.stochastic_depth = StochasticDepth(drop_path)

    def _exchange(self, hidden: dict[str, torch.Tensor], in_windows: bool) -> dict[str, torch.Tensor]:
        """CAIM between compressed tokens (B·T, N, r) of the same segment, window by window or over the frame."""
        if self.gates is None:
            return hidden
        if not in_windows:
            hidden["video"], hidden["audio"] = self.gates(hidden["video"], hidden["audio"])
            return hidden
        video, audio = self.gates(self.handle.windows(hidden["video"]), self.handle.windows(hidden["audio"]))
        return {"video": self.handle.merge_windows(video), "audio": self.handle.merge_windows(audio)}

    def _adapt_jointly(self, branch: dict[str, torch.Tensor], adapters: nn.ModuleDict | None,
                       in_windows: bool) -> dict[str, torch.Tensor]:
        if adapters is None:
            return branch
        hidden = self._exchange({m: adapters[m].compress(y) for m, y in branch.items()}, in_windows)  # (B*T, N, r)
        return {m: y + adapters[m].expand(hidden[m]) for m, y in branch.items()}

    def forward(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.temporal_adapters is not None:
            tokens = {
                m: StochasticDepth.add(x, along_time(
                    lambda seq, m=m: self.temporal_adapters[m](
                        self.handle.attention_over_time(seq, self.temporal_position_bias[m]())),
                    x, self.num_frames), position_mask(self.stochastic_depth, x, self.num_frames))
                for m, x in tokens.items()
            }
        spatial = self._adapt_jointly(
            {m: self.handle.attention(x) for m, x in tokens.items()}, self.spatial_adapters, in_windows=True)
        tokens = {m: x + spatial[m] for m, x in tokens.items()}
        ffn = self._adapt_jointly({m: self.handle.ffn(x) for m, x in tokens.items()}, self.global_adapters,
                                  in_windows=False)
        return {m: x + ffn[m] for m, x in tokens.items()}


def build_swin_blocks(backbone: SwinBackbone, modalities: tuple[str, ...], config: STGCMAConfig) -> nn.ModuleList:
    """One adapted block per Swin block; drop path rising linearly from 0 over all blocks, as on the ViT."""
    ratios = swin_stage_ratios(backbone, config)
    depth = len(backbone.blocks)
    rates = iter(config.drop_path * i / max(depth - 1, 1) for i in range(depth))
    return nn.ModuleList(
        SwinSTGCMABlock(handle, modalities, config, max(1, round(ratio * stage.dim)), next(rates))
        for stage, ratio in zip(backbone.stages, ratios) for handle in stage.blocks)

