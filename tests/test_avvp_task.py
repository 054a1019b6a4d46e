"""The AVVP heads (HAN, MGN), their loss, their parameter counts and the prediction result, on tiny models."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from avadapt.errors import OptionError
from avadapt.models import build_without_weights, create_model
from avadapt.param_table import CLIP_B16, PRESET_ROWS, measure
from avadapt.tasks import get_task
from avadapt.tasks.avvp.dataset import DENSE_FILES, LLP_CLASSES
from avadapt.tasks.avvp.predict import read_video_ground_truth, track_decisions
from avadapt.tasks.avvp.task import AVVPConfig, AVVPOutputs, HANHead
from avadapt.types import AVFeatures, FeatureSpec
from tests.media_helpers import SHARED_DATA

pytestmark = pytest.mark.usefixtures("one_thread")
B, T, C = 2, 10, 25


def spec(dim: int = 16, audio_dim: int | None = None, modalities=("video", "audio")) -> FeatureSpec:
    return FeatureSpec(dim=dim, modalities=modalities, num_segments=T, map_dims=(dim,), map_strides=(16,),
                       image_size=(32, 32), family="vit", audio_dim=audio_dim)


def features(dim: int = 16, audio_dim: int | None = None, seed: int = 0) -> AVFeatures:
    g = torch.Generator().manual_seed(seed)
    return AVFeatures(video=torch.randn(B, T, dim, generator=g), audio=torch.randn(B, T, audio_dim or dim, generator=g))


def weak_labels() -> torch.Tensor:
    labels = torch.zeros(B, C)
    labels[0, 3], labels[1, [0, 5]] = 1, 1
    return labels


def test_han_pools_segments_with_attention_over_time_and_modalities():
    head = HANHead(spec(), AVVPConfig(dim=16, ffn_dim=32)).eval()
    with torch.no_grad():
        out = head(features())
        assert out.video.shape == out.audio.shape == (B, C) and out.audio_segments.shape == (B, T, C)
        assert 0 <= float(out.video.min()) and float(out.video.max()) <= 1
        # uniform attention over time and modalities: the video-level figures are plain means of the segments'
        for layer in (head.temporal_attention, head.modality_attention):
            layer.weight.zero_()
            layer.bias.zero_()
        out = head(features())
    torch.testing.assert_close(out.audio, out.audio_segments.mean(1))
    torch.testing.assert_close(out.visual, out.visual_segments.mean(1))
    torch.testing.assert_close(out.video, (out.audio + out.visual) / 2)


def test_the_loss_is_the_weakly_supervised_bce_with_smoothed_visual_targets():
    head = HANHead(spec(), AVVPConfig(dim=16, ffn_dim=32))
    y = weak_labels()
    p = torch.full((B, C), 0.2)
    p[y.bool()] = 0.7
    outputs = AVVPOutputs(video=p, audio=p.clone(), visual=torch.full((B, C), 0.5), audio_segments=torch.zeros(B, T, C),
                          visual_segments=torch.zeros(B, T, C))

    def bce(prob, target):
        return -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for q, t in zip(prob.flatten().tolist(),
                                                                               target.flatten().tolist())) / prob.numel()

    expected = 2 * bce(p, y) + bce(torch.full((B, C), 0.5), 0.9 * y + 0.05)
    assert float(head.loss(outputs, {"labels": y})) == pytest.approx(expected, rel=1e-6)


def test_mgn_tokens_group_segments_and_its_loss_adds_two_class_token_terms():
    config = AVVPConfig(head="mgn", dim=16, heads=4, audio_depth=1, visual_depth=1, cross_modal_depth=1,
                        temporal_dim=8)
    head = get_task("avvp").build_head(spec(24, audio_dim=12), config).eval()
    with torch.no_grad():
        out = head(features(24, audio_dim=12))
    assert out.video.shape == (B, C) and out.visual_segments.shape == (B, T, C)
    # soft assignment: a segment's probability is its class's times 1 + a softmax over the segments
    ratio = out.audio_segments / out.audio[:, None, :]
    assert float(ratio.min()) > 1 and float(ratio.max()) <= 2 and torch.allclose(ratio.sum(1), torch.tensor(11.0))
    # the class tokens start at zero, so each token's logits are the classifier's zero bias: CE = log 25 twice
    no_tokens = AVVPOutputs(out.video, out.audio, out.visual, out.audio_segments, out.visual_segments)
    y = weak_labels()
    assert float(head.loss(out, {"labels": y}) - head.loss(no_tokens, {"labels": y})) == pytest.approx(2 * math.log(C))

    hard = get_task("avvp").build_head(spec(24, 12), AVVPConfig(**{**config.to_dict(), "unimodal_assignment": "hard"}))
    with torch.no_grad():
        out = hard.eval()(features(24, audio_dim=12))
    assert ((out.audio_segments > 0).sum(-1) == 1).all()  # each segment in one class group


def test_motion_features_are_fused_where_the_config_takes_them():
    head = HANHead(spec(), AVVPConfig(dim=16, ffn_dim=32, extra_video_dim=6)).eval()
    with pytest.raises(OptionError, match="motion_features"):
        head(features())
    with torch.no_grad():
        first = head(features(), motion_features=torch.zeros(B, T, 6)).video
        second = head(features(), motion_features=torch.ones(B, T, 6)).video
    assert not torch.equal(first, second)
    base = HANHead(spec(), AVVPConfig(dim=16, ffn_dim=32))
    extra = sum(p.numel() for p in head.parameters()) - sum(p.numel() for p in base.parameters())
    assert extra == (6 * 16 + 16) + (32 * 16 + 16)  # Linear 6→16, then Linear 32→16 on the concatenation


def test_bad_configs_and_one_stream_models_are_refused():
    with pytest.raises(OptionError, match="head must be one of"):
        AVVPConfig(head="cmbs")
    with pytest.raises(OptionError, match="multiple of heads"):
        AVVPConfig(head="mgn", dim=12)
    with pytest.raises(OptionError, match="no audio branch"):
        HANHead(spec(modalities=("video",)), AVVPConfig())


def test_han_head_has_the_baselines_size_and_dg_sct_takes_mgn():
    model = build_without_weights(backbone="vit_base_patch16_clip_224.openai", method="probe", task="avvp")
    d, D = 512, 768
    attention = 4 * d * d + 4 * d
    expected = 2 * (D * d + d) + 2 * attention + (2 * d * d + 2 * d) + 4 * d + 3 * (d * C + C)
    assert sum(p.numel() for p in model.head.parameters()) == expected
    dg_sct = build_without_weights(backbone="test_vit", method="dg_sct", task="avvp", audio_backbone="htsat_tiny")
    assert dg_sct.head.config.head == "mgn" and dg_sct.head.config.dim == 128
    rows = [row for row in PRESET_ROWS if row.task == "avvp"]
    assert {row.method for row in rows} == {"stg_cma", "dg_sct"}
    han_row = measure(next(row for row in rows if row.method == "stg_cma" and row.backbone == CLIP_B16))
    stg_cma_ave = measure(next(row for row in PRESET_ROWS if row.task == "ave" and row.method == "stg_cma"
                               and row.backbone == han_row["timm_name"] and row.options == {"preset": "base"}))
    ave_head = (2 * D) * 512 + 512 + 512 * 29 + 29  # the AVE classifier the same adapters carry there
    assert han_row["trainable"] - stg_cma_ave["trainable"] == expected - ave_head


def test_prediction_tracks_events_and_scores_them_against_the_dense_rows(tmp_path):
    if not (SHARED_DATA / "llp" / DENSE_FILES["audio"]).is_file():
        pytest.skip(f"shared LLP files not found at {SHARED_DATA / 'llp'}")
    probabilities = torch.zeros(T, 3, C)  # (S, audio / visual / video, C)
    dog, speech = LLP_CLASSES.index("Dog"), LLP_CLASSES.index("Speech")
    probabilities[:, 2, [dog, speech]] = 0.9  # the video holds both
    probabilities[2:6, 0, dog] = 0.8  # heard 2–6
    probabilities[4:8, 1, dog] = 0.7  # seen 4–8
    probabilities[:, 0, speech] = 0.6  # heard throughout
    probabilities[:, 1, speech] = 0.4  # never seen
    tracks = track_decisions(probabilities)
    assert tracks["audio_visual"][dog].nonzero().flatten().tolist() == [4, 5]
    for name in DENSE_FILES.values():
        shutil.copy(SHARED_DATA / "llp" / name, tmp_path / name)
    task = get_task("avvp")
    info = {"video": str(tmp_path / "8DF2PxdT5tE.mp4"), "class_names": list(LLP_CLASSES)}
    result, write = task.prediction_result(probabilities, None, info, ground_truth=str(tmp_path))
    assert [(e["class"], e["start"], e["end"]) for e in result["events"]["audio_visual"]] == [("Dog", 4, 6)]
    assert result["segments"][3]["audio"] == ["Speech", "Dog"] and result["segments"][3]["visual"] == []
    assert result["summary"].startswith("audio: Speech 0-10 s, Dog 2-6 s · visual: Dog 4-8 s")
    # the annotation hears speech 0–2 and 7–10 and a basketball 2–8, no dog: Speech 2·5 / (2·5 + 5), Dog and
    # Basketball 0, over the three classes predicted or present
    assert result["f_scores"]["segment_audio"] == pytest.approx((2 * 5 / (2 * 5 + 5)) / 3, abs=1e-5)
    assert result["f_scores"]["segment_visual"] == 0.0
    out = tmp_path / "pred"
    write(out, result)
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(result)
    truth = read_video_ground_truth(tmp_path / DENSE_FILES["visual"], "x/8DF2PxdT5tE.mp4", T)
    assert truth["audio_visual"][speech].nonzero().flatten().tolist() == [7, 9]
    with pytest.raises(OptionError, match="no dense row for video id 'BjCEufrlXm4'"):
        read_video_ground_truth(tmp_path, "BjCEufrlXm4.mp4", T)


def test_a_tiny_model_trains_a_step(tiny_options, random_inputs):
    options = {**tiny_options, "task": "avvp", "num_frames": T, "dim": 16, "ffn_dim": 32}
    model = create_model(method="stg_cma", ratio="1/4", **options)
    video, audio = random_inputs()
    video, audio = video[:, :1].expand(-1, T, -1, -1, -1), audio[:, :1].expand(-1, T, -1, -1, -1)
    loss = model.head.loss(model(video, audio), {"labels": weak_labels()})
    loss.backward()
    assert all(p.grad is not None for p in model.head.parameters())


def test_no_avvp_option_shares_a_name_with_a_method_option():
    """Method and task options travel in one keyword list (``create_model``, adapter configs): a shared name would
    reach both."""
    import avadapt.methods  # noqa: F401  (registers the methods)
    from avadapt._registry import METHODS

    fields = AVVPConfig.field_names()
    assert {name: sorted(fields & METHODS.get(name).config_class.field_names()) for name in METHODS.names()} == {
        name: [] for name in METHODS.names()}


@pytest.mark.parametrize("config", ["stg_cma_clip_vit_b16.yaml", "stg_cma_clip_vit_l14.yaml",
                                    "swinv2_l_htsat_dg_sct.yaml"])
def test_the_paper_size_configs_build_the_model_their_header_counts(config):
    import re
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "avvp" / config
    model = yaml.safe_load(path.read_text())["model"]
    built = build_without_weights(backbone=model["backbone"], method=model["method"], task=model["task"],
                                  audio_backbone=model.get("audio_backbone"), audio_front_end=model["audio_front_end"],
                                  **model["method_options"], **model["task_options"])
    stated = re.search(r"([\d.]+)M trainable", path.read_text()).group(1)
    assert f"{sum(p.numel() for p in built.trainable_parameters()) / 1e6:.2f}" == stated
