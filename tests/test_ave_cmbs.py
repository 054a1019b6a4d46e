"""DG-SCT's AVE head: the CMRAN-style temporal module and CMBS's relevance / class scores, their four losses,
the prediction rule, and the head inside create_model, training and prediction."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from avadapt.errors import OptionError
from avadapt.layers.temporal_relation import TemporalRelationModule
from avadapt.models import create_model
from avadapt.tasks import get_task
from avadapt.tasks.ave.cmbs import CMBSHead, CMBSOutput, top_k_mean, video_classes
from avadapt.tasks.ave.task import AVEConfig, AVEHead
from avadapt.types import FeatureSpec
from tests.conftest import TINY_AUDIO, TINY_FRAMES, TINY_IMAGE, TINY_VIT

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(video_dim: int, audio_dim: int, segments: int = 5) -> FeatureSpec:
    """A feature spec with its own audio width (what a method with a separate audio encoder hands over)."""
    return FeatureSpec(dim=video_dim, audio_dim=audio_dim, modalities=("video", "audio"), num_segments=segments,
                       map_dims=(video_dim,), map_strides=(16,), image_size=(32, 32), family="swin")


def _small_config(**overrides) -> AVEConfig:
    options = {"head": "cmbs", "num_classes": 4, "video_projection_dim": 16, "audio_projection_dim": 8,
               "temporal_dim": 8}
    return AVEConfig(**{**options, **overrides})


def _features(batch: int, segments: int, video_dim: int, audio_dim: int, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(video=torch.randn(batch, segments, video_dim, generator=g),
                           audio=torch.randn(batch, segments, audio_dim, generator=g))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- sizes ---------------------------------------------------------------------------------------------
def test_full_size_counts_are_the_references_less_its_unused_modules():
    """DG-SCT's TemporalAttention on Swin-V2-L (1536) and HTS-AT (768), counted by hand from its layer list."""

    def linear(i, o):
        return i * o + o

    def lstm(i, h):  # one direction: 4 gates of input and recurrent weights and two biases
        return 4 * h * (i + h) + 8 * h

    def attention(d):
        return 4 * d * d + 4 * d

    encoder_layer = attention(256) + linear(256, 1024) + linear(1024, 256) + 2 * 2 * 256
    reference = (linear(1536, 512) + linear(768, 128)
                 + 2 * lstm(512, 256) + 2 * lstm(128, 128)
                 + linear(512, 256) + linear(256, 256) + 4 * encoder_layer  # two 2-layer encoders
                 + linear(512, 256) + linear(256, 256) + 2 * (attention(256) + encoder_layer)  # decoders
                 + 2 * linear(256, 1))  # gates
    assert reference == 8_386_178  # ≈ 8.4M, the reference's analytic count
    unused_decoder_self_attention = 2 * attention(256)
    with torch.device("meta"):
        temporal = TemporalRelationModule(video_dim=1536, audio_dim=768)
        head = CMBSHead(_spec(1536, 768, segments=10), AVEConfig(head="cmbs"))
    assert _count(temporal) == reference - unused_decoder_self_attention == 7_859_842
    # CMBS: relevance, event classifier, audio and visual class activations over 28 events
    assert _count(head) - _count(head.temporal) == linear(256, 1) + 3 * linear(256, 28) == 21_845
    assert _count(head.temporal) == _count(temporal)


def test_head_takes_audio_and_video_of_different_widths():
    head = CMBSHead(_spec(24, 12), _small_config())
    out = head(_features(2, 5, 24, 12))
    assert out.relevance.shape == (2, 5) and out.av_gate.shape == (2, 5)
    assert out.event_logits.shape == (2, 3) and out.av_score.shape == (2, 3)  # 4 classes = 3 events + background
    assert ((out.av_gate > 0) & (out.av_gate < 1)).all()
    probabilities = out.segment_probabilities()
    assert probabilities.shape == (2, 5, 4)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2, 5))


def test_head_reads_the_single_width_of_a_feature_spec_for_both_streams():
    spec = FeatureSpec(dim=16, modalities=("video", "audio"), num_segments=5, map_dims=(16,), map_strides=(16,),
                       image_size=(32, 32), family="vit")
    head = CMBSHead(spec, _small_config())
    assert head.temporal.audio_projection.in_features == 16 and head.temporal.video_projection[0].in_features == 16
    assert head(_features(1, 5, 16, 16)).relevance.shape == (1, 5)


def test_config_selects_and_checks_the_head():
    task = get_task("ave")
    spec = _spec(16, 16)
    assert isinstance(task.build_head(spec, AVEConfig()), AVEHead)  # the default is unchanged
    assert isinstance(task.build_head(spec, _small_config()), CMBSHead)
    assert AVEConfig.from_dict(_small_config().to_dict()) == _small_config()
    with pytest.raises(OptionError, match="classifier"):
        AVEConfig(head="mlp")
    with pytest.raises(OptionError, match="temporal_dim"):
        AVEConfig(head="cmbs", temporal_dim=6)
    with pytest.raises(OptionError, match="both audio and video"):
        CMBSHead(SimpleNamespace(dim=16, modalities=("video",)), _small_config())


# ---- the temporal module -------------------------------------------------------------------------------
def _ungated(module: TemporalRelationModule, video, audio) -> tuple[torch.Tensor, ...]:
    """v_q, a_q and the gates g_a, g_v, computed from the module's parts."""
    v = module.video_lstm(module.video_projection(video))[0]
    a = module.audio_lstm(module.audio_projection(audio))[0]
    e_v, e_a = module.video_encoder(v), module.audio_encoder(a)
    v_q = module.video_decoder(module.video_query(v), e_a)
    a_q = module.audio_decoder(module.audio_query(a), e_v)
    return v_q, a_q, torch.sigmoid(module.audio_gate(e_a)), torch.sigmoid(module.video_gate(e_v))


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.05])
def test_gates_scale_each_stream_by_the_other_streams_gate(gamma):
    torch.manual_seed(0)
    module = TemporalRelationModule(video_dim=12, audio_dim=6, video_projection_dim=16, audio_projection_dim=8,
                                    dim=8, gate_scale=gamma).eval()
    features = _features(2, 5, 12, 6)
    with torch.no_grad():
        out = module(features.video, features.audio)
        v_q, a_q, g_a, g_v = _ungated(module, features.video, features.audio)
    assert torch.allclose(out.video, v_q * (1 + gamma * g_a), atol=1e-6)
    assert torch.allclose(out.audio, a_q * (1 + gamma * g_v), atol=1e-6)
    assert torch.allclose(out.av_gate, (g_a * g_v).squeeze(-1), atol=1e-6)
    if gamma == 0:
        assert torch.equal(out.video, v_q) and torch.equal(out.audio, a_q)
    else:
        assert not torch.allclose(out.video, v_q)


def test_cross_modal_layer_attends_over_the_other_stream_and_itself():
    """Changing the memory (the other modality) changes the query's output; so does the query itself."""
    torch.manual_seed(0)
    module = TemporalRelationModule(video_dim=4, audio_dim=4, video_projection_dim=8, audio_projection_dim=8,
                                    dim=8).eval()
    layer = module.video_decoder
    query, memory = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    with torch.no_grad():
        base = layer(query, memory)
        assert base.shape == (1, 3, 8)
        assert not torch.allclose(layer(query, memory + 1), base)
        # with a memory equal to the query the keys are [q; q]: the same softmax weights as over q alone
        doubled = layer(query, query)
        x = layer.norm1(query + layer.attention(query, query, query, need_weights=False)[0])
        assert torch.allclose(doubled, layer.norm2(x + layer.ffn(x)), atol=1e-6)


# ---- scores, rule and losses ---------------------------------------------------------------------------
def test_top_k_mean_against_a_hand_computation():
    activations = torch.tensor([[[1.0, -1.0], [5.0, 0.0], [2.0, 4.0], [0.0, 3.0], [3.0, 2.0]]])  # (1, 5, 2)
    assert top_k_mean(activations, 4).tolist() == [[(5 + 3 + 2 + 1) / 4, (4 + 3 + 2 + 0) / 4]]
    assert top_k_mean(activations[:, :3], 4)[0].tolist() == pytest.approx([(1 + 5 + 2) / 3, (-1 + 0 + 4) / 3])  # all


def test_av_score_is_the_mean_of_both_streams_top_k_activations_and_lifts_the_event_logits():
    torch.manual_seed(0)
    head = CMBSHead(_spec(12, 6), _small_config(top_k=2, av_score_weight=0.3)).eval()
    features = _features(2, 5, 12, 6)
    with torch.no_grad():
        out = head(features)
        temporal = head.temporal(features.video, features.audio)
        video_cas = head.video_activation(temporal.video)  # (B, T, K)
        audio_cas = head.audio_activation(temporal.audio)
        hand = (video_cas.sort(dim=1, descending=True).values[:, :2].mean(1)
                + audio_cas.sort(dim=1, descending=True).values[:, :2].mean(1)) / 2
        fused = (temporal.video + temporal.audio) / 2
        classes = head.event_classifier(fused.max(dim=1).values)
    assert torch.allclose(out.av_score, hand, atol=1e-6)
    assert torch.allclose(out.event_logits, classes + 0.3 * hand, atol=1e-6)
    assert torch.allclose(out.relevance, head.relevance(fused).squeeze(-1), atol=1e-6)


def _output(relevance, event_logits, av_score=None, av_gate=None) -> CMBSOutput:
    relevance, event_logits = torch.tensor(relevance), torch.tensor(event_logits)
    return CMBSOutput(relevance=relevance, event_logits=event_logits,
                      av_score=torch.zeros_like(event_logits) if av_score is None else torch.tensor(av_score),
                      av_gate=torch.full_like(relevance, 0.5) if av_gate is None else torch.tensor(av_gate))


def test_prediction_is_the_clips_class_where_relevance_exceeds_a_half_else_background():
    # three events (0, 1, 2) and background 3; σ(−1) = 0.27, σ(0.2) = 0.55, σ(3) = 0.95, σ(−0.1) = 0.48
    out = _output([[-1.0, 0.2, 3.0, -0.1], [0.5, 0.5, -2.0, 2.0]], [[0.1, 2.0, 0.5], [3.0, 0.0, 1.0]])
    expected = [[3, 1, 1, 3], [0, 0, 3, 0]]
    assert out.segment_labels().tolist() == expected
    probabilities = out.segment_probabilities()
    assert probabilities.argmax(-1).tolist() == expected
    assert torch.allclose(probabilities.sum(-1), torch.ones(2, 4))
    # second 1 of clip 0: r = σ(0.2), q = softmax(0.1, 2.0, 0.5); class 1 ∝ r·q1, background ∝ (1 − r)·q1
    r = 1 / (1 + math.exp(-0.2))
    assert probabilities[0, 1, 3].item() / probabilities[0, 1, 1].item() == pytest.approx((1 - r) / r, rel=1e-5)
    head = CMBSHead(_spec(8, 8), _small_config())
    labels, scores = head.predict(out)
    assert labels.tolist() == expected and torch.allclose(scores, probabilities.max(-1).values)


def test_accuracy_scores_the_rules_labels_over_all_segments_of_the_split():
    head = CMBSHead(_spec(8, 8), _small_config())
    metrics = head.metrics()
    first = _output([[-1.0, 0.2, 3.0, -0.1], [0.5, 0.5, -2.0, 2.0]], [[0.1, 2.0, 0.5], [3.0, 0.0, 1.0]])
    head.update_metrics(metrics, first, {"labels": torch.tensor([[3, 1, 1, 1], [0, 0, 3, 3]])})  # 6 of 8
    second = _output([[1.0, 1.0, 1.0, 1.0]], [[0.0, 0.0, 1.0]])  # predicts 2, 2, 2, 2
    head.update_metrics(metrics, second, {"labels": torch.tensor([[3, 3, 3, 2]])})  # 1 of 4
    assert metrics.compute()["accuracy"].item() == pytest.approx(7 / 12)  # not (6/8 + 1/4) / 2


def test_video_class_is_the_event_of_the_foreground_seconds():
    labels = torch.tensor([[3, 1, 1, 3], [3, 3, 3, 3], [0, 2, 2, 3], [2, 0, 0, 2]])
    classes, has_event = video_classes(labels, num_classes=4)
    assert has_event.tolist() == [True, False, True, True]
    assert classes[has_event].tolist() == [1, 2, 0]  # the most seconds; a tie goes to the lower index


def _bce_with_logits(logits: list[float], targets: list[float]) -> float:
    return sum(-(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
               for x, y in zip(logits, targets)) / len(logits)


def _cross_entropy(logits: list[float], target: int) -> float:
    return math.log(sum(math.exp(x) for x in logits)) - logits[target]


def test_the_four_loss_terms_against_a_hand_computation():
    head = CMBSHead(_spec(8, 8), _small_config())
    labels = torch.tensor([[3, 1, 1, 3]])  # clip class 1, foreground mask 0 1 1 0
    out = _output([[-1.0, 0.2, 3.0, -0.1]], [[0.1, 2.0, 0.5]], av_score=[[0.3, -0.2, 0.4]],
                  av_gate=[[0.1, 0.6, 0.7, 0.2]])
    terms = head.loss_terms(out, {"labels": labels})
    mask = [0.0, 1.0, 1.0, 0.0]
    assert terms["relevance"].item() == pytest.approx(_bce_with_logits([-1.0, 0.2, 3.0, -0.1], mask), rel=1e-5)
    assert terms["gate"].item() == pytest.approx(_bce_with_logits([0.1, 0.6, 0.7, 0.2], mask), rel=1e-5)
    assert terms["event"].item() == pytest.approx(_cross_entropy([0.1, 2.0, 0.5], 1), rel=1e-5)
    assert terms["av_score"].item() == pytest.approx(_cross_entropy([0.3, -0.2, 0.4], 1), rel=1e-5)
    assert head.loss(out, {"labels": labels}).item() == pytest.approx(sum(t.item() for t in terms.values()))


@pytest.mark.parametrize("term, change", [
    ("relevance", {"relevance": [[2.0, 0.2, 3.0, -0.1]]}),
    ("gate", {"av_gate": [[0.9, 0.6, 0.7, 0.2]]}),
    ("event", {"event_logits": [[0.1, -2.0, 0.5]]}),
    ("av_score", {"av_score": [[0.3, 2.0, 0.4]]}),
])
def test_each_loss_term_moves_with_its_own_input_only(term, change):
    head = CMBSHead(_spec(8, 8), _small_config())
    base = {"relevance": [[-1.0, 0.2, 3.0, -0.1]], "event_logits": [[0.1, 2.0, 0.5]],
            "av_score": [[0.3, -0.2, 0.4]], "av_gate": [[0.1, 0.6, 0.7, 0.2]]}
    targets = {"labels": torch.tensor([[3, 1, 1, 3]])}
    before = head.loss_terms(_output(**base), targets)
    after = head.loss_terms(_output(**{**base, **change}), targets)
    assert [name for name in before if after[name].item() != pytest.approx(before[name].item())] == [term]


def test_targets_change_the_terms_they_feed():
    head = CMBSHead(_spec(8, 8), _small_config())
    out = _output([[-1.0, 0.2, 3.0, -0.1]], [[0.1, 2.0, 0.5]], av_score=[[0.3, -0.2, 0.4]])
    events = head.loss_terms(out, {"labels": torch.tensor([[1, 1, 1, 1]])})
    background = head.loss_terms(out, {"labels": torch.tensor([[3, 3, 3, 3]])})
    other_class = head.loss_terms(out, {"labels": torch.tensor([[2, 2, 2, 2]])})
    assert events["relevance"] != background["relevance"] and events["gate"] != background["gate"]
    assert events["event"] != other_class["event"] and events["av_score"] != other_class["av_score"]
    # a clip without event seconds has no class: the classification terms leave it out
    assert background["event"].item() == 0 and background["av_score"].item() == 0
    mixed = head.loss_terms(_output([[-1.0, 0.2, 3.0, -0.1]] * 2, [[0.1, 2.0, 0.5]] * 2,
                                    av_score=[[0.3, -0.2, 0.4]] * 2),
                            {"labels": torch.tensor([[1, 1, 1, 1], [3, 3, 3, 3]])})
    assert mixed["event"].item() == pytest.approx(events["event"].item())


# ---- inside the model ----------------------------------------------------------------------------------
def _tiny_model(method: str = "probe", **options):
    torch.manual_seed(0)
    return create_model(backbone=TINY_VIT, method=method, task="ave", head="cmbs", num_classes=3,
                        video_projection_dim=16, audio_projection_dim=8, temporal_dim=16,
                        backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO}, num_frames=TINY_FRAMES,
                        **options)


@pytest.mark.parametrize("method", ["probe", "lavish"])
def test_every_trainable_parameter_gets_a_gradient(method, random_inputs):
    model = _tiny_model(method).train()
    video, audio = random_inputs(batch=2)
    labels = torch.tensor([[2, 0, 0], [1, 1, 2]])  # background = 2
    model.head.loss(model(video, audio), {"labels": labels}).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    silent = [n for n, p in model.head.named_parameters() if p.grad.abs().sum() == 0]
    assert not silent


def test_a_tiny_model_fits_a_synthetic_batch(random_inputs):
    """The head learns fixed labels from the frozen probe's features: the loss falls and the rule gets them."""
    model = _tiny_model()
    video, audio = random_inputs(batch=4, seed=1)
    labels = torch.tensor([[2, 0, 0], [1, 1, 2], [2, 2, 2], [0, 2, 0]])
    with torch.no_grad():
        features = model.features(video, audio)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.head.loss(model.head(features), {"labels": labels})
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        out = model.head(features)
    assert out.segment_labels().tolist() == labels.tolist()


def test_fit_validate_and_predict_a_video_with_the_cmbs_head(tmp_path):
    """Lightning trains and scores it; ``predict`` averages its per-second probabilities and draws them."""
    import lightning as L

    from avadapt.adapter_files import load_adapter, save_adapter
    from avadapt.data.datamodule import AVDataModule
    from avadapt.prediction import predict_video, write_prediction
    from avadapt.tasks.ave.synth import synthesize_ave
    from avadapt.training import AVAdaptModule

    root = tmp_path / "ave"
    synthesize_ave(root, clips=8, seed=0, num_classes=2, size=32)
    torch.manual_seed(0)
    module = AVAdaptModule(backbone=TINY_VIT, method="probe", task="ave", backbone_options={"img_size": 32},
                           task_options={"num_classes": 3, "head": "cmbs", "temporal_dim": 16,
                                         "video_projection_dim": 16, "audio_projection_dim": 8},
                           fbank={"num_mel_bins": 32, "target_frames": 48}, lr=1e-3, warmup_epochs=0)
    data = AVDataModule(str(root), batch_size=2, num_workers=0, preprocessing=module.preprocessing)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    [result] = trainer.validate(module, datamodule=data, verbose=False)
    assert 0 <= result["val/accuracy"] <= 1 and math.isfinite(result["val/loss"])

    video = next(root.joinpath("AVE").glob("*.mp4"))
    prediction = predict_video(module.model, video, preprocessing=module.preprocessing,
                               class_names=data.class_names)
    assert prediction.probabilities.shape[-1] == 3
    assert torch.allclose(prediction.probabilities.sum(-1), torch.ones(prediction.probabilities.shape[0]))
    written = write_prediction(prediction, tmp_path / "out" / "clip")
    saved = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert [s["label_index"] for s in saved["segments"]] == prediction.probabilities.argmax(-1).tolist()
    assert (tmp_path / "out" / "clip.png").stat().st_size > 0 and written["summary"]

    save_adapter(module.model, tmp_path / "adapter", preprocessing=module.preprocessing)
    with pytest.warns(UserWarning, match="RANDOMLY"):
        loaded = load_adapter(tmp_path / "adapter")
    assert loaded.spec["task_config"]["head"] == "cmbs"
    loaded_state = loaded.head.state_dict()
    assert all(torch.equal(v, loaded_state[k]) for k, v in module.model.head.state_dict().items())
