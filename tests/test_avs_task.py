"""AVS task: the decoder on Swin- and ViT-style feature maps, TPAVI, the loss on annotated frames, the KL term,
the metrics wiring, predictions with their picture, and the STG-CMA Swin-L parameter count."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from avadapt.errors import OptionError
from avadapt.layers.segmentation import TPAVI, ResidualConvUnit
from avadapt.models import build_without_weights, create_model, parameter_report
from avadapt.param_table import PRESET_ROWS, SWIN_L
from avadapt.prediction import VideoPrediction, write_prediction
from avadapt.tasks import get_task
from avadapt.tasks.avs.predict import mask_iou
from avadapt.tasks.avs.task import AVSConfig, AVSHead, AVSOutputs, AVSTask, TPAVIStageFeatures
from avadapt.types import AVFeatures, FeatureSpec
from tests.conftest import TINY_AUDIO, TINY_IMAGE, TINY_VIT

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"projection_dims": (8, 8, 16, 16), "decoder_dim": 16, "audio_dim": 8}
"""Decoder widths small enough for CPU tests; the structure is the reference's."""


def _spec(dims, strides, image=64, dim=24, modalities=("video", "audio"), frames=2) -> FeatureSpec:
    return FeatureSpec(dim=dim, modalities=modalities, num_segments=frames, map_dims=tuple(dims),
                       map_strides=tuple(strides), image_size=(image, image), family="test")


def _features(spec: FeatureSpec, batch: int = 2, seed: int = 0) -> AVFeatures:
    g = torch.Generator().manual_seed(seed)
    height, width = spec.image_size
    maps = [torch.randn(batch, spec.num_segments, (height // s) * (width // s), d, generator=g)
            for d, s in zip(spec.map_dims, spec.map_strides)]
    audio = torch.randn(batch, spec.num_segments, spec.dim, generator=g)
    return AVFeatures(video=maps[-1].mean(2), audio=audio, video_maps=maps)


SWIN_SPEC = _spec((8, 16, 32, 64), (4, 8, 16, 32))


def test_swin_style_maps_give_a_mask_per_frame_at_the_input_size():
    head = AVSHead(SWIN_SPEC, AVSConfig(**SMALL))
    outputs = head(_features(SWIN_SPEC))
    assert isinstance(outputs, AVSOutputs)
    assert outputs.logits.shape == (2, 2, 64, 64) and torch.isfinite(outputs.logits).all()
    # one TPAVI per level: the level's map (B·T, C, h, w) at grids 16, 8, 4, 2 and the aligned audio (B·T, C)
    assert [tuple(s.visual.shape) for s in outputs.tpavi_features] == [(4, 16, g, g) for g in (16, 8, 4, 2)]
    assert [tuple(s.audio.shape) for s in outputs.tpavi_features] == [(4, 16)] * 4
    assert head.pyramid is None


@pytest.mark.parametrize("patch,image,maps", [(16, 64, 4), (16, 64, 1), (14, 56, 4), (14, 98, 1), (16, 112, 4)])
def test_vit_style_maps_become_a_four_level_pyramid(patch, image, maps):
    """Same-stride maps → levels at the grid ×4, ×2, ×1, ×½ (odd grids round the ½ level up); logits at the
    input size for any patch (56 / 14 = 4: grid 16 after ×4, output 32 → 64, resized to 56)."""
    spec = _spec((32,) * maps, (patch,) * maps, image=image)
    head = AVSHead(spec, AVSConfig(**SMALL))
    outputs = head(_features(spec))
    grid = image // patch
    assert [s.visual.shape[-1] for s in outputs.tpavi_features] == [4 * grid, 2 * grid, grid, math.ceil(grid / 2)]
    assert outputs.logits.shape == (2, 2, image, image) and torch.isfinite(outputs.logits).all()
    assert head.pyramid.out_dims == (8, 16, 32, 32)  # ViTDet: D/4, D/2, D, D


@pytest.mark.parametrize("maps,sources", [(1, (0, 0, 0, 0)), (2, (0, 0, 1, 1)), (4, (0, 1, 2, 3)),
                                          (12, (2, 5, 8, 11))])
def test_pyramid_levels_read_the_maps_at_quarter_depths(maps, sources):
    head = AVSHead(_spec((32,) * maps, (16,) * maps), AVSConfig(**SMALL))
    assert head.level_sources == sources


def test_the_pyramid_level_of_each_map_is_its_own():
    """With four maps, changing map 0 changes only the finest level before TPAVI and fusion mix them."""
    spec = _spec((32,) * 4, (16,) * 4)
    head = AVSHead(spec, AVSConfig(**SMALL, tpavi_stages=()))
    features = _features(spec)
    images = [x.flatten(0, 1).transpose(1, 2).unflatten(2, (4, 4)) for x in features.video_maps]
    before = head.pyramid([images[i] for i in head.level_sources])
    images[0] = images[0] + 1.0
    after = head.pyramid([images[i] for i in head.level_sources])
    assert [not torch.equal(b, a) for b, a in zip(before, after)] == [True, False, False, False]


def _dense_tpavi(block: TPAVI, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """AVSBench's formulation: audio broadcast over every position, an N × N affinity divided by N."""
    batch, channels, frames, height, width = x.shape
    aligned = block.align_audio(audio)  # (B, T, C)
    broadcast = aligned.transpose(1, 2)[..., None, None].expand(-1, -1, -1, height, width)  # (B, C, T, H, W)
    theta = block.theta(x).flatten(2).transpose(1, 2)  # (B, N, C')
    phi = block.phi(broadcast).flatten(2)  # (B, C', N)
    g = block.g(x).flatten(2).transpose(1, 2)  # (B, N, C')
    positions = frames * height * width
    y = (theta @ phi / positions) @ g  # (B, N, C')
    y = y.transpose(1, 2).reshape(batch, -1, frames, height, width)
    z = x + block.out_projection(y)
    return F.layer_norm(z.movedim(1, -1), (channels,), block.norm.weight, block.norm.bias).movedim(-1, 1)


def test_tpavi_equals_the_dense_non_local_block():
    torch.manual_seed(0)
    block = TPAVI(8, audio_dim=6)
    with torch.no_grad():  # open the zero-initialised BatchNorm so the attention path counts
        block.out_projection[1].weight.normal_()
        block.out_projection[1].bias.normal_()
    block.eval()
    x, audio = torch.randn(2, 8, 3, 4, 5), torch.randn(2, 3, 6)
    z, aligned = block(x, audio)
    torch.testing.assert_close(z, _dense_tpavi(block, x, audio), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aligned, block.align_audio(audio))


def test_residual_conv_unit_rectifies_its_skip_as_the_reference_does():
    """The reference's in-place ReLU also rectifies the skip: a non-positive input acts as zeros."""
    torch.manual_seed(0)
    unit = ResidualConvUnit(4)
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(unit(-x.abs()), unit(torch.zeros_like(x)))
    assert not torch.allclose(unit(x.abs()), unit(torch.zeros_like(x)))


def test_decoder_ignores_the_audio_at_init_and_reads_it_after_one_step():
    torch.manual_seed(0)
    head = AVSHead(SWIN_SPEC, AVSConfig(**SMALL))
    features, other = _features(SWIN_SPEC, seed=0), _features(SWIN_SPEC, seed=1)
    swapped = AVFeatures(features.video, other.audio, features.video_maps)
    torch.testing.assert_close(head(features).logits, head(swapped).logits, rtol=0, atol=0)

    masks = (torch.rand(2, 2, 64, 64) > 0.5).float()
    targets = {"masks": masks, "annotated": torch.ones(2, 2, dtype=torch.bool)}
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    head.loss(head(features), targets).backward()
    optimizer.step()
    assert not torch.allclose(head(features).logits, head(swapped).logits)


def _outputs(logits: torch.Tensor, stages=()) -> AVSOutputs:
    return AVSOutputs(logits, list(stages))


def _small_head(**options) -> AVSHead:
    return AVSHead(SWIN_SPEC, AVSConfig(**{**SMALL, **options}))


def test_loss_is_bce_over_the_annotated_frames_only():
    head = _small_head()
    ln3 = math.log(3)
    annotated_logits = torch.tensor([[0.0, ln3], [-ln3, 0.0]])
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 0] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    targets = {"masks": masks, "annotated": torch.tensor([[True, False]])}
    logits = torch.stack([annotated_logits, torch.randn(2, 2)]).unsqueeze(0)  # (1, 2, 2, 2)
    # −log σ(0) = log 2, −log σ(ln 3) = log 4/3, −log(1 − σ(−ln 3)) = log 4/3, −log(1 − σ(0)) = log 2
    expected = (2 * math.log(2) + 2 * math.log(4 / 3)) / 4  # = log(8/3) / 2 = 0.490415
    assert head.loss(_outputs(logits), targets).item() == pytest.approx(expected, abs=1e-6)
    logits[0, 1] = 50.0  # the unannotated frame
    assert head.loss(_outputs(logits), targets).item() == pytest.approx(expected, abs=1e-6)
    none = {"masks": masks, "annotated": torch.zeros(1, 2, dtype=torch.bool)}
    assert head.loss(_outputs(logits), none).item() == 0.0


def test_kl_term_counts_only_with_a_positive_weight():
    """One level, two identical frames; visual (3 channels, 1×1) = (2, 0, −4), audio (0, 0, 0), logits 0.

    mask = σ(0) = ½ → masked visual = ReLU(2, 0, −4)·½ = (1, 0, 0); q = softmax(1, 0, 0), p = (⅓, ⅓, ⅓);
    the term sums KL(p ‖ q) over the frames."""
    visual = torch.tensor([2.0, 0.0, -4.0]).view(1, 3, 1, 1).repeat(2, 1, 1, 1)
    stage = TPAVIStageFeatures(visual=visual, audio=torch.zeros(2, 3))
    logits = torch.zeros(1, 2, 2, 2)
    targets = {"masks": torch.zeros(1, 2, 2, 2), "annotated": torch.ones(1, 2, dtype=torch.bool)}
    q = [math.e / (math.e + 2), 1 / (math.e + 2), 1 / (math.e + 2)]
    kl = sum(1 / 3 * math.log((1 / 3) / qi) for qi in q)  # 0.119453
    bce = math.log(2)
    without = _small_head().loss(_outputs(logits, [stage]), targets).item()
    with_kl = _small_head(kl_weight=0.5).loss(_outputs(logits, [stage]), targets).item()
    assert without == pytest.approx(bce, abs=1e-6)
    assert with_kl - without == pytest.approx(0.5 * 2 * kl, abs=1e-6) and kl > 0


def test_kl_term_flows_from_a_real_forward():
    head = _small_head(kl_weight=0.5)
    features = _features(SWIN_SPEC)
    outputs = head(features)
    targets = {"masks": torch.zeros(2, 2, 64, 64), "annotated": torch.ones(2, 2, dtype=torch.bool)}
    assert head.loss(outputs, targets).item() > _small_head().loss(outputs, targets).item()


def test_perfect_logits_score_one_and_unannotated_frames_are_ignored():
    head = _small_head()
    metrics = head.metrics()
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(2, 3, 8, 8, generator=g) > 0.6).float()
    masks[0, 0] = 0  # an empty ground truth: scored by the correctly empty prediction
    logits = masks * 20 - 10
    logits[1, 2] = -logits[1, 2]  # wrong, but not annotated
    annotated = torch.ones(2, 3, dtype=torch.bool)
    annotated[1, 2] = False
    head.update_metrics(metrics, _outputs(logits), {"masks": masks, "annotated": annotated})
    result = metrics.compute()
    assert set(result) == {"miou", "fscore", "miou_per_batch", "fscore_split"}
    for value in result.values():
        assert value.item() == pytest.approx(1.0, abs=1e-6)


def test_the_reported_f_score_is_avsbench_per_batch_one_so_the_evaluation_batch_changes_it():
    # two one-frame clips, each perfectly separable at its own threshold: clip 0 for th in (0.6, 0.9], clip 1 for
    # th in (0.1, 0.3]; at th in (0.1, 0.3] clip 0 predicts all 4 pixels (precision 1/4, recall 1)
    probabilities = torch.tensor([[[[0.9, 0.6], [0.6, 0.6]]], [[[0.3, 0.1], [0.1, 0.1]]]], dtype=torch.float64)
    logits = torch.logit(probabilities).float()  # (B=2, T=1, 2, 2)
    masks = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).expand(2, 1, 2, 2)
    annotated = torch.ones(2, 1, dtype=torch.bool)
    f_quarter = 1.3 * 0.25 / (0.3 * 0.25 + 1.0)  # F(β² = 0.3) at precision 1/4, recall 1
    head = _small_head()

    def evaluate(eval_batch: int) -> dict[str, float]:
        metrics = head.metrics()
        for start in range(0, 2, eval_batch):
            clips = slice(start, start + eval_batch)
            head.update_metrics(metrics, _outputs(logits[clips]), {"masks": masks[clips], "annotated": annotated[clips]})
        return {name: value.item() for name, value in metrics.compute().items()}

    one_by_one, together = evaluate(1), evaluate(2)
    assert one_by_one["fscore"] == pytest.approx(1.0, abs=1e-6)  # each batch finds its own best threshold
    assert together["fscore"] == pytest.approx((1.0 + f_quarter) / 2, abs=1e-6)  # one threshold for both
    # the split form: one threshold for the whole split, however it was batched
    assert one_by_one["fscore_split"] == pytest.approx(together["fscore_split"], abs=1e-6)
    assert together["fscore_split"] == pytest.approx((1.0 + f_quarter) / 2, abs=1e-6)


def test_metrics_and_loss_resize_logits_to_the_ground_truth():
    head = _small_head()
    masks = torch.zeros(1, 1, 8, 8)
    masks[..., :4, :] = 1
    logits = torch.full((1, 1, 4, 4), -10.0)
    logits[..., :2, :] = 10.0
    metrics = head.metrics()
    head.update_metrics(metrics, _outputs(logits), {"masks": masks, "annotated": torch.ones(1, 1, dtype=torch.bool)})
    assert metrics.compute()["miou"].item() == pytest.approx(1.0, abs=1e-6)


def _write_mask(path, mask: np.ndarray, scale: int = 2, mode: str = "L") -> None:
    big = np.kron(mask.astype(np.uint8), np.ones((scale, scale), dtype=np.uint8))
    Image.fromarray(big * 255).convert(mode).save(path)


def test_write_prediction_writes_masks_picture_and_json_and_scores_the_ground_truth(tmp_path):
    predicted = np.zeros((3, 8, 8), dtype=bool)
    predicted[0, :4, :4] = True  # 16 pixels
    predicted[2, :2, :2] = True
    truth = np.zeros((3, 8, 8), dtype=bool)
    truth[0, :4, :] = True  # 32 pixels, holds the 16 predicted: IoU 16/32
    truth[2, 6:, 6:] = True  # disjoint: IoU 0; frame 1 is empty in both: the true-negative ratio 1
    expected = [16 / 32, 1.0, 0.0]
    folder = tmp_path / "gt"
    folder.mkdir()
    for k in range(3):  # AVSBench's names, 16×16 (resized to the 8×8 frames); palette and 1-bit masks too
        _write_mask(folder / f"clip_{k + 1}.png", truth[k], mode=("L", "P", "1")[k])
    probabilities = torch.from_numpy(np.where(predicted, 0.9, 0.1)).float()
    frames = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    info = {"video": "clip.mp4", "duration": 3.0, "seconds": 3, "window_seconds": 5, "window_starts": [0],
            "class_names": None}
    result = write_prediction(VideoPrediction(AVSTask(), probabilities, frames, info), tmp_path / "out" / "clip",
                              str(folder))

    assert [mask_iou(p, t) for p, t in zip(predicted, truth)] == expected
    assert [f["iou"] for f in result["frames"]] == pytest.approx(expected)
    assert result["miou"] == pytest.approx(0.5)
    assert result["agreement"] == "mIoU with the ground truth: 0.500 over 3 frames"
    assert [f["mask_area"] for f in result["frames"]] == pytest.approx([16 / 64, 0, 4 / 64])
    assert result["frames"][0]["mean_probability_in_mask"] == pytest.approx(0.9)
    assert result["frames"][1]["mean_probability_in_mask"] is None
    assert result["summary"].startswith("sounding object in 2 of 3 s")
    assert json.loads((tmp_path / "out" / "clip.json").read_text())["miou"] == pytest.approx(0.5)
    assert (tmp_path / "out" / "clip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for k in range(3):
        written = np.asarray(Image.open(tmp_path / "out" / "clip_masks" / f"{k + 1:02d}.png"))
        assert set(np.unique(written)) <= {0, 255}
        assert np.array_equal(written == 255, predicted[k])
    unwritten = write_prediction(VideoPrediction(AVSTask(), probabilities, frames, info), None, str(folder))  # no files
    assert "masks_dir" not in unwritten and unwritten["miou"] == result["miou"]
    assert all("mask" not in f for f in unwritten["frames"])


def test_write_prediction_with_the_first_frame_annotated_only(tmp_path):
    """S4's train split: one mask, ``{name}_1.png``, for the first of five frames."""
    truth = np.zeros((8, 8), dtype=bool)
    truth[:, :4] = True
    folder = tmp_path / "gt"
    folder.mkdir()
    _write_mask(folder / "clip_1.png", truth)
    probabilities = torch.full((5, 8, 8), 0.2)
    probabilities[0, :, :2] = 0.8  # half the object: IoU 16/32
    info = {"video": "clip.mp4", "duration": 5.0, "seconds": 5, "window_seconds": 5, "window_starts": [0]}
    prediction = VideoPrediction(AVSTask(), probabilities, torch.zeros(5, 8, 8, 3, dtype=torch.uint8), info)
    result = write_prediction(prediction, tmp_path / "clip", str(folder))
    assert result["agreement"] == "mIoU with the ground truth: 0.500 over 1 frames"
    assert "iou" in result["frames"][0] and "iou" not in result["frames"][1]
    with pytest.raises(OptionError, match="folder"):
        write_prediction(prediction, tmp_path / "clip", str(folder / "clip_1.png"))


def test_task_declarations():
    task = get_task("avs")
    assert isinstance(task, AVSTask) and task.head_class is AVSHead
    assert (task.monitor, task.monitor_mode, task.dataset) == ("miou", "max", "avs_s4")
    logits = torch.tensor([[[[0.0, math.log(3)]]]])
    torch.testing.assert_close(task.segment_probabilities(_outputs(logits)), torch.tensor([[[[0.5, 0.75]]]]))


@pytest.mark.parametrize("options,message", [
    ({"projection_dims": ()}, "projection_dims"), ({"projection_dims": (64, 0)}, "projection_dims"),
    ({"decoder_dim": 100}, "decoder_dim"), ({"audio_dim": 0}, "audio_dim"),
    ({"tpavi_stages": (0, 4)}, "tpavi_stages"), ({"tpavi_stages": (1, 1)}, "twice"),
    ({"kl_weight": -0.5}, "kl_weight"), ({"kl_weight": float("nan")}, "kl_weight"),
    ({"kl_weight": 0.5, "tpavi_stages": ()}, "TPAVI"),
])
def test_config_rejects_values_that_cannot_work(options, message):
    with pytest.raises(OptionError, match=message):
        AVSConfig(**options)


def test_config_round_trips_through_json():
    config = AVSConfig(tpavi_stages=(3, 1), kl_weight=0.5)
    assert config.tpavi_stages == (1, 3)
    assert AVSConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_head_needs_the_video_branch_and_audio_for_tpavi():
    with pytest.raises(OptionError, match="video"):
        AVSHead(_spec((8, 16), (4, 8), modalities=("audio",)), AVSConfig(**SMALL))
    with pytest.raises(OptionError, match="tpavi_stages"):
        AVSHead(_spec((8, 16), (4, 8), modalities=("video",)), AVSConfig(**SMALL))
    visual_only = AVSHead(_spec((8, 16, 32, 64), (4, 8, 16, 32), modalities=("video",)),
                          AVSConfig(**SMALL, tpavi_stages=()))
    features = _features(SWIN_SPEC)
    assert visual_only(AVFeatures(features.video, None, features.video_maps)).logits.shape == (2, 2, 64, 64)


def _decoder_count(stage_dims, projection=(64, 128, 320, 512), width=256, audio_in=1536, audio=128) -> int:
    """AVSBench's decoder, counted from its module shapes by hand."""
    linears = sum(d * p + p for d, p in zip(stage_dims, projection))  # projections
    dilated = sum(4 * (9 * p * width + width) for p in projection)  # four 3×3 convs per level
    half = width // 2
    tpavi = 4 * ((audio * width + width) + 3 * (width * half + half) + (half * width + width) + 2 * width
                 + 2 * width)  # align, θ φ g, W_z, BatchNorm, LayerNorm
    fusion = 4 * 2 * 2 * (9 * width * width + width)  # four blocks of two units of two 3×3 convs
    output = (9 * width * 128 + 128) + (9 * 128 * 32 + 32) + (32 + 1)
    return linears + dilated + tpavi + fusion + output + (audio_in * audio + audio)


def test_stg_cma_swin_large_avs_count_matches_the_reference():
    """STG-CMA's AVS Swin-L fusion model: 38.6M trainable, 21.2M of it decoder, TPAVI and projections."""
    model = build_without_weights(backbone=SWIN_L, method="stg_cma", task="avs", preset="base", num_frames=5)
    report = parameter_report(model)
    head = report["breakdown"]["head"]
    assert head == _decoder_count((192, 384, 768, 1536)) == 21_168_961
    assert abs(head - 21.2e6) <= 0.1e6
    assert abs(report["trainable"] - 38.6e6) <= 0.1e6
    # the coarsest fusion block's lateral unit never runs, and the reference counts it: two 3×3 convs 256→256
    unused = model.head.fusion_blocks[-1].lateral_unit
    assert sum(p.numel() for p in unused.parameters()) == 2 * (9 * 256 * 256 + 256) == 1_180_160


def test_the_parameter_table_has_the_avs_rows():
    rows = [row for row in PRESET_ROWS if row.task == "avs"]
    assert {(row.method, row.backbone) for row in rows} >= {("stg_cma", SWIN_L)}
    assert next(row for row in rows if row.backbone == SWIN_L).paper.startswith("38.6M")


def test_tiny_vit_model_trains_end_to_end_on_avs(random_inputs):
    torch.manual_seed(0)
    model = create_model(backbone=TINY_VIT, method="stg_cma", task="avs", ratio="1/8", num_frames=3,
                         backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO}, kl_weight=0.5, **SMALL)
    model.train()
    video, audio = random_inputs()
    outputs = model(video, audio)
    assert outputs.logits.shape == (2, 3, TINY_IMAGE, TINY_IMAGE)
    masks = (torch.rand(2, 3, TINY_IMAGE, TINY_IMAGE) > 0.5).float()
    annotated = torch.tensor([[True, False, False], [True, True, True]])
    model.head.loss(outputs, {"masks": masks, "annotated": annotated}).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(torch.isfinite(p.grad).all() for p in trainable if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.method.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_tiny_two_stage_swin_model_runs_on_avs():
    """A hierarchical backbone with fewer stages than levels uses the finest levels it has."""
    from tests.zoo import build, inputs

    model = build("swin", "lavish", task="avs", preset="avs", **SMALL)
    video, audio = inputs(model)
    outputs = model(video, audio)
    assert outputs.logits.shape[-2:] == video.shape[-2:]
    assert len(outputs.tpavi_features) == 2
    outputs.logits.mean().backward()
