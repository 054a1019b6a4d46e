"""Audio-visual segmentation (AVSBench S4 / MS3): a mask of the sounding object(s) in every frame, by AVSBench's
decoder (Zhou et al., ECCV 2022) as LAVISH and STG-CMA put it on their adapted backbones; its losses, metrics and
the Task declarations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from avadapt._config import JSONConfig, positive_int
from avadapt.errors import OptionError
from avadapt.layers.pyramid import PYRAMID_SCALES, SimpleFeaturePyramid
from avadapt.layers.segmentation import TPAVI, DilatedConvSum, FeatureFusionBlock
from avadapt.tasks.avs.metrics import avs_metrics
from avadapt.tasks.avs.predict import AVSPrediction
from avadapt.tasks.base import TaskHead, register_task
from avadapt.types import AVFeatures, FeatureSpec


@dataclass
class AVSConfig(JSONConfig):
    """AVSBench's decoder as STG-CMA's and LAVISH's AVS models configure it.

    projection_dims: per level, finest first, the width a Linear projects the backbone's map to before the
        dilated convolutions (AVSBench keeps PVT-v2-b5's stage widths 64 / 128 / 320 / 512, and the adapter
        methods project their backbone's stages to them). Also sets the number of levels (4).
    decoder_dim: the decoder's width after the dilated convolutions (256); the output convolution narrows it to
        decoder_dim / 2 and decoder_dim / 8 (128 and 32) before the single logit.
    tpavi_stages: the levels (0 = finest) that get a TPAVI block; the references use all four.
    audio_dim: width of the audio vector TPAVI reads (128, VGGish's width in AVSBench): the per-segment audio
        feature is projected to it by a Linear.
    kl_weight: weight λ of AVSBench's masked audio-visual KL term (0: off; 0.5 in the MS3 recipes of AVSBench
        and DG-SCT). Needs at least one TPAVI stage, whose aligned audio it reads.
    """

    projection_dims: tuple[int, ...] = (64, 128, 320, 512)
    decoder_dim: int = 256
    tpavi_stages: tuple[int, ...] = (0, 1, 2, 3)
    audio_dim: int = 128
    kl_weight: float = 0.0

    def __post_init__(self):
        self.projection_dims = tuple(self.projection_dims)
        self.tpavi_stages = tuple(self.tpavi_stages)
        if not self.projection_dims or not all(positive_int(d) for d in self.projection_dims):
            raise OptionError(f"projection_dims must be positive integers, one per level, got {self.projection_dims}")
        if not positive_int(self.decoder_dim) or self.decoder_dim % 8:
            raise OptionError(f"decoder_dim must be a positive multiple of 8, got {self.decoder_dim!r}")
        if not positive_int(self.audio_dim):
            raise OptionError(f"audio_dim must be a positive integer, got {self.audio_dim!r}")
        levels = range(len(self.projection_dims))
        if not all(isinstance(s, int) and s in levels for s in self.tpavi_stages):
            raise OptionError(f"tpavi_stages must be levels in 0..{len(levels) - 1}, got {self.tpavi_stages}")
        if len(set(self.tpavi_stages)) != len(self.tpavi_stages):
            raise OptionError(f"tpavi_stages lists a level twice: {self.tpavi_stages}")
        self.tpavi_stages = tuple(sorted(self.tpavi_stages))
        if isinstance(self.kl_weight, bool) or not isinstance(self.kl_weight, (int, float)) \
                or not math.isfinite(self.kl_weight) or self.kl_weight < 0:
            raise OptionError(f"kl_weight must be a finite number ≥ 0, got {self.kl_weight!r}")
        if self.kl_weight > 0 and not self.tpavi_stages:
            raise OptionError("kl_weight > 0 compares masked visual maps with TPAVI's aligned audio: "
                              "it needs at least one TPAVI stage")


@dataclass
class TPAVIStageFeatures:
    """What the masked audio-visual KL term reads at one TPAVI level: ``visual`` (B·T, C, h, w) the level's map
    after TPAVI, ``audio`` (B·T, C) the audio TPAVI aligned to C channels."""

    visual: torch.Tensor
    audio: torch.Tensor


@dataclass
class AVSOutputs:
    """The head's outputs: ``logits`` (B, T, H, W), one per pixel of the input frames, and per TPAVI level (finest
    first) the features of the masked audio-visual KL term."""

    logits: torch.Tensor
    tpavi_features: list[TPAVIStageFeatures] = field(default_factory=list)


def masked_audio_visual_kl(logits: torch.Tensor, stages: list[TPAVIStageFeatures]) -> torch.Tensor:
    """AVSBench's masked audio-visual matching term, as its MS3 recipe runs it (``A_MaskedV_SimmLoss`` with
    ``--kl_flag``, average pooling, no thresholding, no feature normalisation). DG-SCT's MS3 reuses it.

    logits: (N, H, W) predicted mask logits of the N = B·T frames. For each TPAVI level with visual map V
    (N, C, h, w) and aligned audio A (N, C):

        M = sigmoid(AdaptiveAvgPool_{h×w}(logits))                      (N, 1, h, w)
        v_n = mean_{h,w}(ReLU(V_n) ⊙ M_n)                                 (C,)
        L_level = Σ_n KL(softmax(A_n) ‖ softmax(v_n))

    and the term is the mean of L_level over the levels. As in the reference, the KL is summed over the frames
    of the batch (not averaged), gradients reach the predicted mask as well as both features, and every frame
    counts, annotated or not (the term reads no ground truth). The ReLU is the reference's too: its fusion
    blocks rectify the TPAVI outputs in place before the loss reads them.
    """
    if not stages:
        return logits.new_zeros(())
    total = logits.new_zeros((), dtype=torch.float32)
    for stage in stages:
        visual = F.relu(stage.visual.float())  # (N, C, h, w)
        mask = torch.sigmoid(F.adaptive_avg_pool2d(logits.float().unsqueeze(1), visual.shape[-2:]))  # (N, 1, h, w)
        masked = (visual * mask).mean(dim=(-2, -1))  # (N, C)
        total = total + F.kl_div(masked.log_softmax(-1), stage.audio.float().softmax(-1), reduction="sum")
    return total / len(stages)


def _resized(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(…, h, w) logits resized (bilinear) to ``size`` unless already there."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


class AVSHead(TaskHead):
    """AVSBench's decoder over the video maps of an adapted backbone, with TPAVI reading the segment's audio.

    Input: ``features.video_maps`` (B, T, N_s, D_s) row-major token grids, ``spec.map_strides`` their strides,
    and ``features.audio`` (B, T, D) the per-segment audio vector (the final norm pooled over tokens), which a
    Linear projects to ``audio_dim`` ("audio = pooled audio tokens → Linear 1536→128" in STG-CMA and LAVISH).

    Levels: a hierarchical spec (strides differ) gives one level per map, finest first. A spec whose maps all
    share one stride (a ViT) is made into four levels at the grid ×4, ×2, ×1, ×½ by
    :class:`~avadapt.layers.pyramid.SimpleFeaturePyramid`; level l reads map ⌈(l + 1)·n / 4⌉ − 1 of the n maps
    (four maps from blocks at ¼, ½, ¾ and full depth: one each; a single map: all four levels).

    Per level: Linear D_s → projection_dims[l], :class:`DilatedConvSum` → decoder_dim, TPAVI at ``tpavi_stages``;
    then the fusion path from the coarsest level to the finest and the output convolution to one logit, resized
    (bilinear) to ``spec.image_size`` unless already there: a Swin at 224 lands exactly on 224², a ViT-L/14 (16×16
    grid, finest level 64²) on 256².

    Initialisation as STG-CMA's: Linear layers truncated normal (std 0.02) with zero bias; the dilated
    convolutions N(0, 0.01²); TPAVI's output BatchNorm zero, so the decoder starts independent of the audio.
    """

    config_class = AVSConfig

    def __init__(self, spec: FeatureSpec, config: AVSConfig):
        super().__init__(spec, config)
        if "video" not in spec.modalities:
            raise OptionError("AVS segments the video frames: the method must run its video branch")
        if config.tpavi_stages and "audio" not in spec.modalities:
            raise OptionError("TPAVI reads the audio branch, which this method runs off; "
                              "set tpavi_stages=[] for a visual-only AVS model")
        if not spec.map_dims or len(spec.map_dims) != len(spec.map_strides):
            raise ValueError(f"the method hands no usable video maps: dims {spec.map_dims}, "
                             f"strides {spec.map_strides}")
        maps = len(spec.map_dims)
        if len(set(spec.map_strides)) == 1:
            if len(set(spec.map_dims)) != 1:
                raise ValueError(f"maps of one stride must share one width, got {spec.map_dims}")
            self.pyramid: SimpleFeaturePyramid | None = SimpleFeaturePyramid(spec.map_dims[0])
            level_dims = self.pyramid.out_dims
            self.level_sources = tuple(math.ceil((level + 1) * maps / len(PYRAMID_SCALES)) - 1
                                       for level in range(len(PYRAMID_SCALES)))
        else:
            self.pyramid = None
            level_dims = spec.map_dims
            self.level_sources = tuple(range(maps))
        if len(level_dims) > len(config.projection_dims):
            raise OptionError(f"{len(level_dims)} levels but projection_dims has {len(config.projection_dims)} "
                              f"entries: {config.projection_dims}")
        # a backbone with fewer stages than projection_dims (a 2-stage test Swin) uses the finest levels only
        projection_dims = config.projection_dims[:len(level_dims)]
        width = config.decoder_dim
        self.projections = nn.ModuleList(nn.Linear(d, p) for d, p in zip(level_dims, projection_dims))
        self.level_convs = nn.ModuleList(DilatedConvSum(p, width) for p in projection_dims)
        stages = [s for s in config.tpavi_stages if s < len(level_dims)]
        self.audio_projection = nn.Linear(spec.audio_dim, config.audio_dim) if stages else None
        self.tpavi = nn.ModuleDict({str(s): TPAVI(width, config.audio_dim) for s in stages})
        self.fusion_blocks = nn.ModuleList(FeatureFusionBlock(width) for _ in level_dims)
        self.output_conv = nn.Sequential(
            nn.Conv2d(width, width // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(width // 2, width // 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width // 8, 1, kernel_size=1),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def _grid(self, tokens: int, stride: int) -> tuple[int, int]:
        height, width = self.spec.image_size
        grid = (height // stride, width // stride)
        if grid[0] * grid[1] != tokens:
            raise ValueError(f"a map of {tokens} tokens is not the {grid[0]}×{grid[1]} grid of a {height}×{width} "
                             f"image at stride {stride}")
        return grid

    def forward(self, features: AVFeatures, **inputs: torch.Tensor) -> AVSOutputs:
        maps = features.video_maps
        if len(maps) != len(self.spec.map_dims):
            raise ValueError(f"expected {len(self.spec.map_dims)} video maps, got {len(maps)}")
        batch, frames = maps[0].shape[:2]
        images = [x.flatten(0, 1).transpose(1, 2).unflatten(2, self._grid(x.shape[2], stride))  # (B·T, D, h, w)
                  for x, stride in zip(maps, self.spec.map_strides)]
        if self.pyramid is not None:
            images = self.pyramid([images[i] for i in self.level_sources])
        levels = [conv(project(x.movedim(1, -1)).movedim(-1, 1))  # (B·T, C, h, w)
                  for x, project, conv in zip(images, self.projections, self.level_convs)]

        tpavi_features = []
        if self.audio_projection is not None:
            audio = self.audio_projection(features.audio)  # (B, T, audio_dim)
            for stage, tpavi in self.tpavi.items():
                level = int(stage)
                x = levels[level].unflatten(0, (batch, frames)).transpose(1, 2)  # (B, C, T, h, w)
                x, aligned = tpavi(x, audio)
                levels[level] = x.transpose(1, 2).flatten(0, 1)  # (B·T, C, h, w)
                tpavi_features.append(TPAVIStageFeatures(levels[level], aligned.flatten(0, 1)))

        finest = levels[0].shape[-2:]
        # the grid each level's block upsamples to: the next finer level's, twice its own for the finest
        targets = [(2 * finest[0], 2 * finest[1])] + [tuple(x.shape[-2:]) for x in levels[:-1]]
        x = self.fusion_blocks[-1](levels[-1], None, targets[-1])
        for level in reversed(range(len(levels) - 1)):
            x = self.fusion_blocks[level](x, levels[level], targets[level])
        logits = _resized(self.output_conv(x), self.spec.image_size)  # (B·T, 1, H, W)
        return AVSOutputs(logits.view(batch, frames, *logits.shape[-2:]), tpavi_features)

    def loss(self, outputs: AVSOutputs, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Binary cross-entropy (on the logits) averaged over the pixels of the annotated frames, plus
        ``kl_weight`` × :func:`masked_audio_visual_kl`.

        targets: ``masks`` (B, T, H, W) in {0, 1} and ``annotated`` (B, T) bool, the frames with a ground-truth
        mask. A batch without an annotated frame contributes a zero (with a graph) to the BCE part.
        """
        masks, annotated = targets["masks"], targets["annotated"].bool()
        logits = _resized(outputs.logits.float(), masks.shape[-2:])
        if annotated.any():
            loss = F.binary_cross_entropy_with_logits(logits[annotated], masks[annotated].to(logits.dtype))
        else:
            loss = logits.sum() * 0.0
        if self.config.kl_weight > 0:
            loss = loss + self.config.kl_weight * masked_audio_visual_kl(outputs.logits.flatten(0, 1),
                                                                        outputs.tpavi_features)
        return loss

    def metrics(self) -> MetricCollection:
        """AVSBench's mIoU and F-score over the annotated frames of a split (:func:`avs_metrics`)."""
        return MetricCollection(avs_metrics(), compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, outputs: AVSOutputs, targets: dict[str, torch.Tensor]) -> None:
        """Every frame of the batch as one (B·T) row, the unannotated ones flagged so the metrics skip them."""
        masks = targets["masks"]
        logits = _resized(outputs.logits, masks.shape[-2:])
        metrics.update(logits.flatten(0, 1), masks.flatten(0, 1), targets["annotated"].flatten())


@register_task
class AVSTask(AVSPrediction):
    """Audio-visual segmentation: a mask of what sounds in every frame; selected on mIoU. ``avadapt predict``
    writes a mask per second, their picture and a JSON summary."""

    name = "avs"
    head_class = AVSHead
    monitor = "miou"
    dataset = "avs_s4"
    num_segments = 5
    # the Swin loaders of STG-CMA (its probe too) and LAVISH for this dataset; on a ViT the family's default.
    # DG-SCT's AVS loaders tile each second to the 5 s clip, not to HTS-AT's 10 s, whatever it sees with.
    paper_audio_front_ends: ClassVar[dict[tuple[str, str], str]] = {
        ("stg_cma", "swin"): "stg_cma_swin_avs", ("probe", "swin"): "stg_cma_swin_avs",
        ("lavish", "swin"): "lavish_swin_avs", ("dg_sct", "swin"): "htsat_avs", ("dg_sct", "vit"): "htsat_avs"}
