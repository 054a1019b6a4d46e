"""DG-SCT over a frozen visual backbone and a frozen audio encoder of its own (or one shared backbone)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from avadapt._registry import METHODS
from avadapt.backbones import Backbone
from avadapt.methods.base import AVMethod, backbone_stages, block_width, map_taps, run_frozen_block
from avadapt.methods.dg_sct.config import PAPER_TASK_OPTIONS, DGSCTConfig
from avadapt.methods.dg_sct.modules import DGSCTAdapter, DGSCTBlock, TokenLayout
from avadapt.methods.dg_sct.pairing import pair_blocks
from avadapt.types import AVFeatures

# The paper's audio encoder: HTS-AT (Chen et al., ICASSP 2022) in its AudioSet shape (avadapt.backbones.htsat).
PAPER_AUDIO_ENCODER = ("htsat", {})


def token_layout(backbone: Backbone, handle, modality: str) -> TokenLayout:
    """The tokens ``handle`` sees when ``backbone`` encodes ``modality``: a Swin stage's grid, or a ViT's class
    token and patch grid (the audio grid for spectrograms)."""
    if backbone.family == "vit":
        grid = backbone.audio_grid if modality == "audio" else backbone.video_grid
        return TokenLayout(tuple(grid), backbone.embed_dim, prefix=1)
    return TokenLayout(tuple(handle.grid), block_width(backbone, handle))


def stage_depths(backbone: Backbone) -> list[int]:
    return [len(stage.blocks) for stage in backbone_stages(backbone)]


class _BlockWalk:
    """One encoder's blocks in running order, each with the patch merging that opens its stage (or None)."""

    def __init__(self, backbone: Backbone):
        self.blocks: list[tuple[object, Callable | None]] = [
            (handle, stage.downsample if i == 0 else None)
            for stage in backbone_stages(backbone) for i, handle in enumerate(stage.blocks)]
        self.taps = map_taps(backbone)


@METHODS.register("dg_sct")
class DGSCT(AVMethod):
    """DG-SCT (Duan et al., "Cross-modal Prompts: Adapting Large Pre-trained Models for Audio-Visual Downstream
    Tasks", NeurIPS 2023): dual-guided spatial-channel-temporal adapters between a frozen visual encoder (Swin-V2-L
    in the paper) and a frozen audio encoder (HTS-AT).

    Blocks of the two encoders are paired by :func:`~avadapt.methods.dg_sct.pairing.pair_blocks`; each pair gets
    four adapters (:class:`DGSCTBlock`), unpaired blocks run frozen, patch merging and final norms stay frozen.
    Per-segment vectors are the last tokens pooled by the guidance maps P of the last pair's p2 adapters (visual
    1536-d and audio 768-d on the paper's encoders); without guidance, by mean (Swin) or class token (ViT). The
    visual tokens pass the visual encoder's final norm first; the tokens of a separate audio encoder do not: the
    official code pools HTS-AT's last stage as it leaves the blocks (its ``norm`` is never applied). Audio through
    the shared backbone gets the backbone's final norm, as in every other method. With the output gates at 0 every
    token map equals the frozen encoders' (the audio maps too where the audio adapters are gated).

    Without ``audio_backbone`` audio goes through the visual backbone as well (every block paired with itself).
    """

    config_class = DGSCTConfig
    accepts_audio_backbone = True
    paper_audio_backbone = PAPER_AUDIO_ENCODER
    paper_audio_front_end = "htsat"  # HTS-AT's own log-mel of each second tiled to 10 s (AVS: its task's 5 s)
    paper_task_options = PAPER_TASK_OPTIONS

    def __init__(self, backbone: Backbone, config: DGSCTConfig, audio_backbone: Backbone | None = None):
        super().__init__(backbone, "audio_visual", config.num_frames, audio_backbone=audio_backbone)
        self.config = config
        if self.audio_encoder is not None:  # HTS-AT's tokens are pooled as they leave its last block
            self.final_norm_modalities = ("video",)
        self.walks = {"video": _BlockWalk(backbone), "audio": _BlockWalk(self.audio_backbone)}
        self.pairs = pair_blocks(stage_depths(backbone), stage_depths(self.audio_backbone))
        visual_blocks, audio_blocks = self.walks["video"].blocks, self.walks["audio"].blocks
        self.blocks = nn.ModuleList(
            DGSCTBlock(visual_blocks[v][0], audio_blocks[a][0],
                       token_layout(backbone, visual_blocks[v][0], "video"),
                       token_layout(self.audio_backbone, audio_blocks[a][0], "audio"), config, config.num_frames)
            for v, a in self.pairs)

    def encode(self, video: torch.Tensor, audio: torch.Tensor,
               ) -> tuple[dict[str, list[torch.Tensor]], dict[str, torch.Tensor | None]]:
        """(B, T, 3, H, W), (B, T, 1, F, L) → token maps per modality at :func:`map_taps` of its encoder
        ((B·T, [1 +] N_s, D_s), before the final norm), and the pooling maps P (B·T, [1 +] N) of the last pair."""
        return self._run(self.embed(video, audio))

    def encode_stages(self, tokens: dict[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        return self._run(tokens)[0]

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> AVFeatures:
        """Token maps as every method's; per-segment vectors pooled by the guidance maps (``features_from``)."""
        return self.features_from(*self.encode(video, audio))

    def _run(self, tokens: dict[str, torch.Tensor],
             ) -> tuple[dict[str, list[torch.Tensor]], dict[str, torch.Tensor | None]]:
        """Both encoders block by block: unpaired blocks frozen, each pair through its :class:`DGSCTBlock`, each
        stage opened by its encoder's frozen patch merging."""
        x = {m: self.encoder(m).pre_norm(t) for m, t in tokens.items()}  # (B*T, [1 +] N, D) per modality
        maps: dict[str, list[torch.Tensor]] = {"video": [], "audio": []}
        done = {"video": 0, "audio": 0}

        def enter(modality: str) -> None:
            downsample = self.walks[modality].blocks[done[modality]][1]
            if downsample is not None:
                x[modality] = downsample(x[modality])  # (B*T, N_s, D_s)

        def leave(modality: str) -> None:
            maps[modality].extend([x[modality]] * self.walks[modality].taps.count(done[modality]))
            done[modality] += 1

        def frozen_until(modality: str, stop: int) -> None:
            while done[modality] < stop:
                enter(modality)
                x[modality] = run_frozen_block(self.walks[modality].blocks[done[modality]][0], x[modality])
                leave(modality)

        recompute = self.config.activation_checkpointing and torch.is_grad_enabled()
        pooling: dict[str, torch.Tensor | None] = {"video": None, "audio": None}
        for block, (visual_index, audio_index) in zip(self.blocks, self.pairs):
            frozen_until("video", visual_index)
            frozen_until("audio", audio_index)
            enter("video")
            enter("audio")
            if recompute:
                out = checkpoint(block, x["video"], x["audio"], use_reentrant=False)
            else:
                out = block(x["video"], x["audio"])
            x["video"], x["audio"], pooling["video"], pooling["audio"] = out
            leave("video")
            leave("audio")
        frozen_until("video", len(self.walks["video"].blocks))
        frozen_until("audio", len(self.walks["audio"].blocks))
        return maps, pooling

    def parameter_breakdown(self) -> OrderedDict[str, int]:
        """Trainable parameters of all adapters by kind (token-axis convs, cross-modal Linears, guidance, the
        LAVISH part, temporal attention), found by module structure."""
        roles: OrderedDict[str, int] = OrderedDict()
        for adapter in self.modules():
            if isinstance(adapter, DGSCTAdapter):
                for role, count in adapter.parameter_roles().items():
                    roles[f"adapters: {role}"] = roles.get(f"adapters: {role}", 0) + count
        return roles
