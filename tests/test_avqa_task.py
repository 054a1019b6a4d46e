"""AVQA task: the AVST head on ViT- and Swin-style features, its loss and match negatives, MUSIC-AVQA's pooled
accuracies, the grounding checkpoint, a tiny model end to end, the answer picture and the parameter rows."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from avadapt.errors import CheckpointError, OptionError
from avadapt.models import build_without_weights, create_model, parameter_report
from avadapt.param_table import PRESET_ROWS, SWIN_L, SWINV2_L, measure
from avadapt.tasks import get_task
from avadapt.tasks.avqa.metrics import TYPE_GROUP_INDICES, AVQAAccuracy
from avadapt.tasks.avqa.predict import draw_answer, top_answers
from avadapt.tasks.avqa.questions import QUESTION_TYPE_NAMES
from avadapt.tasks.avqa.task import (
    AVQAConfig,
    AVQAOutputs,
    AVQATask,
    AVSTHead,
    load_grounding_checkpoint,
    negative_partners,
)
from avadapt.types import AVFeatures, FeatureSpec
from tests.conftest import TINY_AUDIO, TINY_IMAGE, TINY_VIT

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = ("<pad>", "<unk>", "what", "is", "the", "left", "instrument", "sounding")
SEGMENTS = 10
TOKENS = 6
ANSWERS = 5
SMALL = {"question_vocab": VOCAB, "num_answers": ANSWERS, "max_question_tokens": TOKENS, "heads": 2}


def _spec(dim, dims, strides, image=64) -> FeatureSpec:
    return FeatureSpec(dim=dim, modalities=("video", "audio"), num_segments=SEGMENTS, map_dims=tuple(dims),
                       map_strides=tuple(strides), image_size=(image, image), family="test")


VIT_SPEC = _spec(32, (32,) * 4, (16,) * 4)  # 4×4 grid of 32-wide tokens
SWIN_SPEC = _spec(64, (8, 16, 32, 64), (4, 8, 16, 32))  # last map 2×2 at 64 wide


def _features(spec: FeatureSpec, batch: int, seed: int = 0) -> AVFeatures:
    g = torch.Generator().manual_seed(seed)
    height, width = spec.image_size
    maps = [torch.randn(batch, SEGMENTS, (height // s) * (width // s), d, generator=g)
            for d, s in zip(spec.map_dims, spec.map_strides)]
    return AVFeatures(video=maps[-1].mean(2), audio=torch.randn(batch, SEGMENTS, spec.dim, generator=g),
                      video_maps=maps)


def _questions(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    question = torch.randint(2, len(VOCAB), (batch, TOKENS), generator=g)
    question[:, 4:] = 0  # padded after four words
    return question


def _head(spec: FeatureSpec, seed: int = 0, **options) -> AVSTHead:
    torch.manual_seed(seed)
    return AVSTHead(spec, AVQAConfig(**{**SMALL, **options})).eval()


# ---- head ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,width,positions,projected", [(VIT_SPEC, None, 16, False), (SWIN_SPEC, 16, 4, True)])
def test_head_outputs_have_the_documented_shapes(spec, width, positions, projected):
    head = _head(spec, width=width)
    batch = 3
    outputs = head(_features(spec, batch), question=_questions(batch))
    assert isinstance(outputs, AVQAOutputs)
    assert outputs.logits.shape == (batch, ANSWERS) and torch.isfinite(outputs.logits).all()
    # every segment of every clip once as a matching pair and once with another clip's map
    assert outputs.match_logits.shape == (2 * batch * SEGMENTS, 2)
    assert outputs.match_targets.tolist() == [1] * (batch * SEGMENTS) + [0] * (batch * SEGMENTS)
    assert outputs.grounding.shape == (batch, SEGMENTS, positions)
    assert torch.allclose(outputs.grounding.sum(-1), torch.ones(batch, SEGMENTS))
    for weights in (outputs.temporal_audio, outputs.temporal_visual):
        assert weights.shape == (batch, SEGMENTS) and torch.allclose(weights.sum(-1), torch.ones(batch))
    assert head.grounding_grid == (int(math.sqrt(positions)),) * 2
    # the projections to the head's width exist only where the backbone's width differs (LAVISH's 512-d head)
    assert isinstance(head.audio_projection, nn.Linear) == projected
    assert isinstance(head.visual_projection, nn.Linear) == projected


def test_grounding_is_a_cosine_softmax_over_the_map_positions():
    head = _head(VIT_SPEC)
    features = _features(VIT_SPEC, 2)
    outputs = head(features, question=_questions(2))
    audio = head.audio_linear(torch.relu(features.audio))  # widths agree: no projection
    visual = features.video_maps[-1]
    cosine = torch.stack([torch.stack([F.cosine_similarity(visual[b, t], audio[b, t].unsqueeze(0), dim=-1)
                                       for t in range(SEGMENTS)]) for b in range(2)])  # (B, T, N)
    assert torch.allclose(outputs.grounding, cosine.softmax(-1), atol=1e-6)


def test_the_question_is_read_over_every_padded_position():
    head = _head(VIT_SPEC)
    features = _features(VIT_SPEC, 2)
    question = _questions(2)  # four words, then two padding tokens
    before = head(features, question=question).logits
    with torch.no_grad():  # the padding embedding matters only if the LSTM runs over the padding, as the reference
        head.question_encoder.embedding.weight[0] += 1.0
    assert not torch.allclose(head(features, question=question).logits, before)
    with pytest.raises(ValueError, match=f"L={TOKENS}"):
        head(features, question=question[:, :4])
    with pytest.raises(ValueError, match="0..7"):
        head(features, question=torch.full((2, TOKENS), len(VOCAB)))
    with pytest.raises(OptionError, match="avadapt ask"):
        head(features)


def test_the_loss_ignores_answers_outside_the_vocabulary():
    head = _head(VIT_SPEC, match_weight=0.0)
    outputs = head(_features(VIT_SPEC, 3), question=_questions(3))
    answers = torch.tensor([-1, 2, 4])
    expected = -(outputs.logits[1].log_softmax(-1)[2] + outputs.logits[2].log_softmax(-1)[4]) / 2
    assert torch.allclose(head.loss(outputs, {"answer": answers}), expected)
    nothing_known = head.loss(outputs, {"answer": torch.full((3,), -1)})
    assert nothing_known.item() == 0.0 and nothing_known.requires_grad


def test_the_match_loss_is_added_with_its_weight():
    features, question, answers = _features(VIT_SPEC, 2), _questions(2), torch.tensor([0, 3])
    outputs = _head(VIT_SPEC, match_weight=0.5)(features, question=question)
    qa = F.cross_entropy(outputs.logits, answers)
    match = -torch.cat((outputs.match_logits[:20].log_softmax(-1)[:, 1],
                        outputs.match_logits[20:].log_softmax(-1)[:, 0])).mean()
    assert torch.allclose(_head(VIT_SPEC, match_weight=0.5).loss(outputs, {"answer": answers}), qa + 0.5 * match)


def test_negative_partners_are_other_videos_and_never_the_clip_itself():
    anchors, partners = negative_partners(4)
    assert anchors.tolist() == [0, 1, 2, 3] and partners.tolist() == [1, 2, 3, 0]  # a roll by one
    videos = torch.tensor([7, 7, 3, 3, 3, 9])
    anchors, partners = negative_partners(6, videos)
    assert anchors.tolist() == [0, 1, 2, 3, 4, 5]
    assert partners.tolist() == [2, 2, 5, 5, 5, 0]  # the first clip of another video after each one
    assert (videos[anchors] != videos[partners]).all()
    anchors, partners = negative_partners(3, torch.tensor([1, 1, 1]))  # one video fills the batch
    assert anchors.numel() == partners.numel() == 0
    assert negative_partners(1)[0].numel() == 0


def test_negatives_ground_a_clips_audio_in_its_partners_map():
    """Changing clip 2's map changes clip 1's negatives (its partner is 2) and clip 2's positives, nothing else."""
    head = _head(VIT_SPEC)
    features, question = _features(VIT_SPEC, 3), _questions(3)
    before = head(features, question=question).match_logits.view(2, 3, SEGMENTS, 2)  # (pos/neg, clip, T, 2)
    features.video_maps[-1][2] += torch.randn_like(features.video_maps[-1][2])
    after = head(features, question=question).match_logits.view(2, 3, SEGMENTS, 2)
    changed = ~torch.isclose(before, after).all(-1).all(-1)  # (pos/neg, clip)
    assert changed.tolist() == [[False, False, True], [False, True, False]]


def test_a_batch_of_one_has_no_match_loss():
    head = _head(VIT_SPEC, match_weight=0.5)
    outputs = head(_features(VIT_SPEC, 1), question=_questions(1))
    assert outputs.match_logits is None and outputs.match_targets is None
    answer = torch.tensor([1])
    assert torch.allclose(head.loss(outputs, {"answer": answer}), F.cross_entropy(outputs.logits, answer))


def test_a_video_index_input_keeps_clips_of_one_video_apart():
    head = _head(VIT_SPEC)
    outputs = head(_features(VIT_SPEC, 3), question=_questions(3), video_index=torch.tensor([4, 4, 4]))
    assert outputs.match_logits is None  # the only other clips show the same video
    outputs = head(_features(VIT_SPEC, 3), question=_questions(3), video_index=torch.tensor([4, 4, 8]))
    assert outputs.match_logits.shape == (2 * 3 * SEGMENTS, 2)


# ---- metrics ---------------------------------------------------------------------------------------------
# 12 questions: type, answer, predicted answer (−1: an answer outside the vocabulary)
HAND_SET = [
    (0, 1, 1), (0, 2, 3),                   # audio counting: 1 of 2
    (1, 4, 4),                              # audio comparative: 1 of 1
    (2, 0, 0),                              # visual counting: 1 of 1
    (3, 3, 3), (3, 1, 1),                   # visual location: 2 of 2
    (4, 2, 2), (5, 2, 0), (6, 4, 4), (7, 1, 2),
    (8, -1, 0), (8, 3, 3),                  # temporal: 1 of 2, the unknown answer counts wrong
]


def _logits(predicted: list[int]) -> torch.Tensor:
    return F.one_hot(torch.tensor(predicted), ANSWERS).float()


def test_group_accuracies_pool_the_counts_of_their_types():
    types, answers, predicted = (list(column) for column in zip(*HAND_SET))
    metric = AVQAAccuracy()
    metric.update(_logits(predicted), torch.tensor(answers), torch.tensor(types))
    result = {k: float(v) for k, v in metric.compute().items()}
    expected = {"accuracy": 8 / 12, "audio": 2 / 3, "visual": 3 / 3, "audio_visual": 3 / 6,
                "type/audio_counting": 1 / 2, "type/audio_comparative": 1.0, "type/visual_counting": 1.0,
                "type/visual_location": 1.0, "type/audio_visual_existential": 1.0, "type/audio_visual_counting": 0.0,
                "type/audio_visual_location": 1.0, "type/audio_visual_comparative": 0.0, "type/audio_visual_temporal": 1 / 2}
    assert result == pytest.approx(expected)
    # pooled, not a mean of types: the audio types' mean would be 0.75
    assert result["audio"] != pytest.approx((result["type/audio_counting"] + result["type/audio_comparative"]) / 2)
    assert [QUESTION_TYPE_NAMES[k] for k in TYPE_GROUP_INDICES["audio_visual"]][-1] == "audio_visual_temporal"


def test_metrics_do_not_depend_on_batch_size_or_order():
    g = torch.Generator().manual_seed(3)
    count = 60
    logits = torch.randn(count, ANSWERS, generator=g)
    answers = torch.randint(-1, ANSWERS, (count,), generator=g)
    types = torch.randint(0, len(QUESTION_TYPE_NAMES), (count,), generator=g)
    whole = AVQAAccuracy()
    whole.update(logits, answers, types)
    reference = whole.compute()
    order = torch.randperm(count, generator=g)
    for sizes in ([1] * count, [7, 13, 29, 11], [count]):
        metric, start = AVQAAccuracy(), 0
        for size in sizes:
            rows = order[start:start + size]
            metric.update(logits[rows], answers[rows], types[rows])
            start += size
        assert {k: float(v) for k, v in metric.compute().items()} == pytest.approx(
            {k: float(v) for k, v in reference.items()})


def test_head_metrics_log_under_the_stage_prefix():
    head = _head(VIT_SPEC)
    metrics = head.metrics().clone(prefix="val/")
    types, answers, predicted = (list(column) for column in zip(*HAND_SET))
    outputs = AVQAOutputs(_logits(predicted), None, None, torch.zeros(12, SEGMENTS, 16),
                          torch.zeros(12, SEGMENTS), torch.zeros(12, SEGMENTS))
    head.update_metrics(metrics, outputs, {"answer": torch.tensor(answers), "question_type": torch.tensor(types)})
    computed = metrics.compute()
    assert set(computed) == {"val/accuracy", "val/audio", "val/visual", "val/audio_visual",
                             *(f"val/type/{name}" for name in QUESTION_TYPE_NAMES)}
    assert all(value.numel() == 1 for value in computed.values())  # what the training module logs as scalars
    assert float(computed["val/accuracy"]) == pytest.approx(8 / 12)
    assert get_task("avqa").monitor == "accuracy"


# ---- grounding checkpoint --------------------------------------------------------------------------------
def _reference_grounding(width: int, audio_in: int, seed: int = 0, prefix: str = "module.") -> dict:
    """A grounding-pretraining state dict in the reference's layout, with a key the loader must ignore."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"fc_a1": (width, audio_in), "fc_a2": (width, width), "fc_gl": (width, 2 * width),
              "fc1": (512, 2 * width), "fc2": (256, 512), "fc3": (128, 256), "fc4": (2, 128)}
    state = {}
    for name, (d_out, d_in) in shapes.items():
        state[f"{prefix}{name}.weight"] = torch.randn(d_out, d_in, generator=g)
        state[f"{prefix}{name}.bias"] = torch.randn(d_out, generator=g)
    state[f"{prefix}fc_a1_pure.weight"] = torch.randn(width, audio_in, generator=g)
    return state


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_grounding_checkpoint_loads_into_the_matching_modules(tmp_path, suffix):
    head = _head(SWIN_SPEC, width=16)  # audio 64 → 16: fc_a1 exists
    state = _reference_grounding(16, 64)
    path = tmp_path / f"grounding{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    assert load_grounding_checkpoint(head, path) == ["fc_a1", "fc_a2", "fc_gl", "fc1", "fc2", "fc3", "fc4"]
    ours = {"fc_a1": head.audio_projection, "fc_a2": head.audio_linear, "fc_gl": head.grounding_fusion,
            "fc1": head.match_classifier[0], "fc2": head.match_classifier[2], "fc3": head.match_classifier[4],
            "fc4": head.match_classifier[6]}
    for name, module in ours.items():
        assert torch.equal(module.weight, state[f"module.{name}.weight"])
        assert torch.equal(module.bias, state[f"module.{name}.bias"])


def test_grounding_checkpoint_skips_fc_a1_when_the_head_has_none(tmp_path):
    head = _head(VIT_SPEC)  # audio width = head width: no fc_a1, as STG-CMA's 1536-d head
    path = tmp_path / "grounding.pt"
    torch.save(_reference_grounding(32, 128, prefix="avqatask_"), path)
    assert load_grounding_checkpoint(head, path) == ["fc_a2", "fc_gl", "fc1", "fc2", "fc3", "fc4"]


def test_grounding_checkpoint_with_other_widths_fails_clearly(tmp_path):
    head = _head(SWIN_SPEC, width=16)
    path = tmp_path / "vggish.pt"
    torch.save(_reference_grounding(16, 128), path)  # fc_a1 trained on 128-d VGGish audio
    before = head.audio_linear.weight.clone()
    with pytest.raises(CheckpointError, match=r"fc_a1.weight has shape \(16, 128\).*\(16, 64\)"):
        load_grounding_checkpoint(head, path)
    assert torch.equal(head.audio_linear.weight, before)  # nothing half-loaded
    loaded = load_grounding_checkpoint(head, path, modules=["fc_a2", "fc_gl", "fc1", "fc2", "fc3", "fc4"])
    assert "fc_a1" not in loaded
    state = _reference_grounding(16, 64)
    del state["module.fc_gl.bias"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="no fc_gl.bias"):
        load_grounding_checkpoint(head, path)
    with pytest.raises(CheckpointError, match="missing.pt: grounding checkpoint not found"):
        load_grounding_checkpoint(head, tmp_path / "missing.pt")
    with pytest.raises(OptionError, match="fc9"):
        load_grounding_checkpoint(head, path, modules=["fc9"])


# ---- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("options,message", [
    ({"question_vocab": ()}, "question_vocab"),
    ({"question_vocab": ("<pad>", "<unk>")}, "more than 2"),
    ({"question_vocab": ("<pad>", "<unk>", "a", "a")}, "more than once"),
    ({"width": 10, "heads": 4}, "multiple of heads"),
    ({"dropout": 1.0}, "dropout"),
    ({"match_weight": -1}, "match_weight"),
    ({"num_answers": 1}, "num_answers"),
])
def test_config_rejects_what_cannot_work(options, message):
    with pytest.raises(OptionError, match=message):
        AVQAConfig(**{**SMALL, **options})


def test_config_round_trips_through_json():
    import json

    config = AVQAConfig(**{**SMALL, "question_vocab": list(VOCAB), "width": 512})
    again = AVQAConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.question_vocab == VOCAB


# ---- the tiny model end to end ---------------------------------------------------------------------------
def test_tiny_vit_model_answers_and_trains_end_to_end():
    torch.manual_seed(0)
    model = create_model(backbone=TINY_VIT, method="stg_cma", task="avqa", ratio="1/8", num_frames=SEGMENTS,
                         backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO},
                         **{**SMALL, "question_vocab": list(VOCAB)})
    model.train()
    g = torch.Generator().manual_seed(1)
    video = torch.randn(2, SEGMENTS, 3, TINY_IMAGE, TINY_IMAGE, generator=g)
    audio = torch.randn(2, SEGMENTS, 1, TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames, generator=g)
    outputs = model(video, audio, question=_questions(2))
    grid = model.head.grounding_grid
    assert outputs.logits.shape == (2, ANSWERS) and outputs.grounding.shape == (2, SEGMENTS, grid[0] * grid[1])
    loss = model.head.loss(outputs, {"answer": torch.tensor([1, -1]), "question_type": torch.tensor([0, 8])})
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(torch.isfinite(p.grad).all() for p in trainable if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.method.parameters() if p.requires_grad)
    assert model.head.question_encoder.embedding.weight.grad.abs().sum() > 0
    with pytest.raises(OptionError, match="avadapt ask"):
        model(video, audio)  # `avadapt predict` has no question to give


def test_questions_of_one_video_share_one_backbone_pass():
    torch.manual_seed(0)
    model = create_model(backbone=TINY_VIT, method="stg_cma", task="avqa", ratio="1/8", num_frames=SEGMENTS,
                         backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO},
                         **{**SMALL, "question_vocab": list(VOCAB)}).eval()
    g = torch.Generator().manual_seed(2)
    video = torch.randn(2, SEGMENTS, 3, TINY_IMAGE, TINY_IMAGE, generator=g)
    audio = torch.randn(2, SEGMENTS, 1, TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames, generator=g)
    clips = torch.tensor([7, 3, 7, 7, 3])  # five questions about two videos
    picks = torch.tensor([0, 1, 0, 0, 1])
    questions = _questions(5)
    seen = []
    hook = model.method.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        shared = model(video[picks], audio[picks], question=questions, video_index=clips)
        alone = [model(video[p:p + 1], audio[p:p + 1], question=questions[k:k + 1], video_index=clips[k:k + 1])
                 for k, p in enumerate(picks.tolist())]
    hook.remove()
    assert seen[0] == 2  # the method ran each video once
    torch.testing.assert_close(shared.logits, torch.cat([a.logits for a in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.grounding, torch.cat([a.grounding for a in alone]), atol=1e-5, rtol=1e-5)


# ---- the task: answers and their picture -----------------------------------------------------------------
def test_the_task_reads_the_whole_video_and_encodes_the_question():
    task = get_task("avqa")
    assert isinstance(task, AVQATask) and task.inputs == ("question", "video_index") and task.dataset == "music_avqa"
    assert task.segment_seconds is None  # T moments spread over the whole file
    head = create_model(backbone=TINY_VIT, method="probe", task="avqa", num_frames=SEGMENTS,
                        backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO},
                        **{**SMALL, "question_vocab": list(VOCAB)}).head
    inputs, reported = task.prediction_inputs(head, "what is the cello sounding?")
    # what=2 is=3 the=4, 'cello' unknown (1), sounding=7, then padding (0) up to max_question_tokens
    assert inputs["question"].tolist() == [[2, 3, 4, 1, 7, 0]]
    assert reported["unknown_words"] == ["cello"] and reported["grounding_grid"] == list(head.grounding_grid)
    with pytest.raises(OptionError, match="more than max_len 6"):
        task.prediction_inputs(head, "what is the left cello left sounding?")
    with pytest.raises(OptionError, match="avadapt ask"):
        task.prediction_inputs(head, None)
    with pytest.raises(OptionError, match="the question is empty"):
        task.prediction_inputs(head, "  ")
    with pytest.raises(OptionError, match="takes no question"):
        get_task("ave").prediction_inputs(head, "Is it loud?")


def test_top_answers_are_the_most_probable_with_their_probabilities():
    probabilities = torch.tensor([0.0, 2.0, 1.0, 3.0, -1.0]).softmax(-1)
    names = ["zero", "two", "yes", "no", "cello"]
    norm = sum(math.exp(x) for x in (0.0, 2.0, 1.0, 3.0, -1.0))
    top = top_answers(probabilities, names)
    assert [name for name, _ in top] == ["no", "two", "yes"]
    assert [p for _, p in top] == pytest.approx([math.exp(3) / norm, math.exp(2) / norm, math.exp(1) / norm])
    with pytest.raises(OptionError, match="4 answer names"):
        top_answers(probabilities, names[:4])


def test_draw_answer_writes_a_picture(tmp_path):
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (SEGMENTS, 48, 64, 3), generator=g, dtype=torch.uint8)
    grounding = torch.rand(SEGMENTS, 6, generator=g).softmax(-1)  # a 2×3 grid
    temporal = torch.rand(2, SEGMENTS, generator=g).softmax(-1)
    path = draw_answer(tmp_path / "answer.png", frames, grounding, (2, 3), temporal[0], temporal[1],
                       "Which instrument sounds first?", [("cello", 0.61), ("piano", 0.2), ("violin", 0.1)])
    image = Image.open(path)
    assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    with pytest.raises(ValueError, match="grounding"):
        draw_answer(tmp_path / "bad.png", frames, grounding, (3, 3), temporal[0], temporal[1], "?", [])


# ---- parameters ------------------------------------------------------------------------------------------
def avst_count(width: int, audio_dim: int, map_dim: int, vocab: int = 93, answers: int = 42) -> int:
    """AVST's parameters written out from the reference's layer list (net_avst.py), for a head of ``width``."""
    def linear(d_in, d_out):
        return d_in * d_out + d_out

    w = width
    count = vocab * w + 4 * w * (w + w) + 8 * w + linear(2 * w, w)  # embedding, LSTM (two bias vectors), fc
    count += (linear(audio_dim, w) if audio_dim != w else 0) + linear(w, w)  # fc_a1, fc_a2
    count += linear(map_dim, w) if map_dim != w else 0  # LAVISH's yb_fc_v
    count += linear(2 * w, w)  # fc_gl
    count += linear(2 * w, 512) + linear(512, 256) + linear(256, 128) + linear(128, 2)  # fc1..fc4
    count += 2 * (linear(w, 3 * w) + linear(w, w) + 2 * linear(w, w) + 2 * w)  # attention, FFN, LayerNorm
    return count + linear(2 * w, w) + linear(w, answers)  # fc_fusion, fc_ans


def test_the_avqa_rows_of_the_parameter_table_against_the_poster():
    rows = {(row.method, row.backbone, row.options.get("width")): row for row in PRESET_ROWS if row.task == "avqa"}
    assert set(rows) >= {("stg_cma", SWIN_L, None), ("stg_cma", SWIN_L, 512), ("lavish", SWINV2_L, 512)}

    large = build_without_weights(backbone=SWIN_L, method="stg_cma", task="avqa", preset="base",
                                  **get_task("avqa").counting_options)
    report = parameter_report(large)
    assert report["breakdown"]["head"] == avst_count(1536, 1536, 1536) == 65_689_260
    assert abs(report["trainable"] - 83.0e6) <= 0.2e6 and abs(report["total"] - 278.1e6) <= 0.1e6

    lavish = measure(rows["lavish", SWINV2_L, 512])
    # the reference also counts Linear layers it never runs (fc_a1 and its _pure copies, fc_v, fc_st, fc, fc_aq,
    # fc_vq, norm3) and builds Swin-V2-L with its 21,841-class head
    unused = 2 * (128 * 512 + 512) + 4 * (512 * 512 + 512) + (2048 * 512 + 512) + (1024 * 512 + 512) + 2 * 512
    classifier = 1536 * 21841 + 21841
    assert abs(lavish["trainable"] + unused - 21.1e6) <= 0.05e6
    assert abs(lavish["total"] + unused + classifier - 249.8e6) <= 0.05e6


def test_training_starts_the_head_from_a_grounding_checkpoint(tmp_path):
    """``AVAdaptModule(head_checkpoint=...)``: a VGGish-width checkpoint still loads, without its fc_a1."""
    from avadapt.training.module import AVAdaptModule

    vocab = ["<pad>", "<unk>", "is", "the", "cello", "playing"]
    path = tmp_path / "grounding.pt"
    state = _reference_grounding(16, 128)  # fc_a1 trained on 128-d audio: ours is 64-d
    torch.save(state, path)
    module = AVAdaptModule(backbone="test_vit", method="stg_cma", task="avqa", backbone_options={"img_size": 32},
                           task_options={"question_vocab": vocab, "width": 16},
                           fbank={"num_mel_bins": 32, "target_frames": 32}, head_checkpoint=str(path))
    assert torch.equal(module.model.head.grounding_fusion.weight, state["module.fc_gl.weight"])
    assert torch.equal(module.model.head.match_classifier[0].weight, state["module.fc1.weight"])
    with pytest.raises(OptionError, match="no pretraining checkpoint"):
        AVAdaptModule(backbone="test_vit", method="stg_cma", task="ave", backbone_options={"img_size": 32},
                      fbank={"num_mel_bins": 32, "target_frames": 32}, head_checkpoint=str(path))
