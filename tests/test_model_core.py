"""STG-CMA on a tiny ViT: identity at init, switches, freezing, parameter accounting."""

from __future__ import annotations

import itertools

import pytest
import torch

import avadapt
from avadapt.errors import OptionError
from avadapt.models import build_without_weights, parameter_report
from tests.conftest import TINY_FRAMES


def test_new_stg_cma_returns_what_the_frozen_backbone_returns(tiny_options, random_inputs):
    torch.manual_seed(0)
    adapted = avadapt.create_model(method="stg_cma", **tiny_options)
    frozen = avadapt.create_model(method="probe", **tiny_options)
    frozen.method.backbone.load_state_dict(adapted.method.backbone.state_dict())
    video, audio = random_inputs()
    for mode in (False, True):  # train mode too: drop path only ever removes an adapter's (zero) residual
        adapted.train(mode)
        frozen.train(mode)
        ours, reference = adapted.features(video, audio), frozen.features(video, audio)
        torch.testing.assert_close(ours.video, reference.video, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.audio, reference.audio, rtol=0, atol=1e-6)
    # and the probe itself is exactly timm's own forward on the frames
    timm_model = frozen.backbone.model
    expected = timm_model.forward_features(video.flatten(0, 1))[:, 0].view(2, TINY_FRAMES, -1)
    torch.testing.assert_close(reference.video, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_drop_path_never_drops_frozen_computation(family):
    """At init every adapter adds zero, so train-mode features equal eval-mode ones whatever the rate."""
    from tests.zoo import build, inputs

    model = build(family, "stg_cma", drop_path=0.9)
    video, audio = inputs(model)
    torch.manual_seed(1)
    trained = model.train().features(video, audio)
    evaluated = model.eval().features(video, audio)
    torch.testing.assert_close(trained.video, evaluated.video, rtol=0, atol=1e-6)
    torch.testing.assert_close(trained.audio, evaluated.audio, rtol=0, atol=1e-6)


def test_a_dropped_token_position_loses_only_its_temporal_adapter_residual(tiny_options, monkeypatch):
    """With every sample dropped, a block in train mode computes what it computes in eval mode without its
    T-Adapters: frozen attention, frozen FFN and the spatial and global adapters all still run."""
    from avadapt.layers import StochasticDepth

    torch.manual_seed(0)
    model = avadapt.create_model(method="stg_cma", drop_path=0.5, **tiny_options)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_(std=0.05)
    block = model.method.blocks[-1]  # the deepest block: the highest rate
    tokens = {"video": torch.randn(2 * TINY_FRAMES, 5, 64), "audio": torch.randn(2 * TINY_FRAMES, 7, 64)}
    def drop_everything(self, x, sample_dims=1):
        return torch.zeros(x.shape[:sample_dims] + (1,) * (x.ndim - sample_dims)) if self.training else None

    monkeypatch.setattr(StochasticDepth, "sample_mask", drop_everything)
    dropped = block.train()({m: x.clone() for m, x in tokens.items()})
    with torch.no_grad():
        for adapter in block.temporal_adapters.values():
            adapter.up.weight.zero_()
            adapter.up.bias.zero_()
    without_temporal = block.eval()({m: x.clone() for m, x in tokens.items()})
    for m in tokens:
        torch.testing.assert_close(dropped[m], without_temporal[m], rtol=0, atol=1e-6)


def test_drop_path_masks_token_positions_across_all_segments():
    from avadapt.layers import StochasticDepth
    from avadapt.methods.stg_cma.modules import position_mask

    torch.manual_seed(0)
    clips, frames, positions = 3, 4, 50
    mask = position_mask(StochasticDepth(0.5).train(), torch.randn(clips * frames, positions, 8), frames)
    assert mask.shape == (clips * frames, positions, 1)
    per_segment = mask.view(clips, frames, positions)
    assert torch.equal(per_segment, per_segment[:, :1].expand(-1, frames, -1))  # same over the T segments
    assert set(mask.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/keep
    assert not torch.equal(per_segment[0, 0], per_segment[1, 0])  # drawn per clip and position
    assert position_mask(StochasticDepth(0.5).eval(), torch.randn(clips * frames, positions, 8), frames) is None


def test_identity_breaks_once_adapters_are_trained(tiny_options, random_inputs):
    """The identity test above could not pass by accident: non-zero up-projections change the output."""
    model = avadapt.create_model(method="stg_cma", **tiny_options).eval()
    video, audio = random_inputs()
    before = model.features(video, audio).video.clone()
    with torch.no_grad():
        model.method.blocks[0].spatial_adapters["video"].up.weight.normal_()
    assert not torch.allclose(model.features(video, audio).video, before)


SWITCHES = list(itertools.product(
    [True, False], [True, False], [True, False],
    ["both", "audio_to_visual", "visual_to_audio", "none"],
    ["audio_visual", "audio_only", "visual_only"],
))


@pytest.mark.parametrize("temporal,spatial,global_,fusion,branches", SWITCHES)
def test_every_switch_combination_runs_forward_and_backward(tiny_options, random_inputs, temporal, spatial,
                                                            global_, fusion, branches):
    model = avadapt.create_model(
        method="stg_cma", temporal_adaptation=temporal, spatial_adaptation=spatial, global_adaptation=global_,
        fusion=fusion, branches=branches, ratio="1/8", **tiny_options)
    video, audio = random_inputs()
    logits = model(video if branches != "audio_only" else None, audio if branches != "visual_only" else None)
    assert logits.shape == (2, TINY_FRAMES, 29)
    logits.square().mean().backward()
    trainable = model.trainable_parameters()
    assert trainable and all(p.grad is not None for p in trainable if p.dim() > 1 or p.numel() > 1)


def test_fusion_direction_decides_which_gates_exist(tiny_options):
    def gates(fusion):
        block = avadapt.create_model(method="stg_cma", fusion=fusion, **tiny_options).method.blocks[0]
        return block.gates and (block.gates.video_gate is not None, block.gates.audio_gate is not None)

    assert gates("both") == (True, True)
    assert gates("audio_to_visual") == (True, False)
    assert gates("visual_to_audio") == (False, True)
    assert gates("none") is None


def test_gradients_reach_only_trainable_parameters_and_frozen_weights_stay_bit_identical(tiny_options,
                                                                                         random_inputs):
    torch.manual_seed(0)
    model = avadapt.create_model(method="stg_cma", **tiny_options)
    frozen_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2, weight_decay=0.1)
    video, audio = random_inputs()
    for _ in range(2):
        optimizer.zero_grad()
        model(video, audio).logsumexp(-1).mean().backward()
        optimizer.step()
    for name, p in model.backbone.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, frozen_before[k]), k
    adapter_up = model.method.blocks[-1].global_adapters["audio"].up.weight
    assert adapter_up.requires_grad and adapter_up.abs().sum() > 0  # the adapters did move


def test_train_mode_leaves_backbone_in_eval_mode(tiny_options):
    model = avadapt.create_model(method="stg_cma", drop_path=0.1, **tiny_options)
    model.train()
    assert model.method.blocks[1].training and model.head.training
    assert not any(m.training for m in model.backbone.model.modules())
    model.eval().train()
    assert not any(m.training for m in model.backbone.model.modules())


def test_full_finetune_trains_the_backbone(tiny_options):
    model = avadapt.create_model(method="stg_cma", full_finetune=True, **tiny_options)
    model.train()
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert model.backbone.model.training
    assert model.method.tuned_final_norm is None  # the backbone's own final norm trains


def test_activation_checkpointing_gives_the_same_gradients(tiny_options, random_inputs):
    torch.manual_seed(0)
    plain = avadapt.create_model(method="stg_cma", drop_path=0.0, **tiny_options)
    recomputed = avadapt.create_model(method="stg_cma", drop_path=0.0, activation_checkpointing=True, **tiny_options)
    recomputed.load_state_dict(plain.state_dict())
    plain.eval(), recomputed.eval()  # no dropout masks; recomputation still runs because grads are on
    with torch.no_grad():  # non-zero adapters so the gradients are not trivially equal
        for a, b in zip(plain.trainable_parameters(), recomputed.trainable_parameters()):
            a.normal_(std=0.05)
            b.copy_(a)
    video, audio = random_inputs()
    for model in (plain, recomputed):
        model(video, audio).square().mean().backward()
    for a, b in zip(plain.trainable_parameters(), recomputed.trainable_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_bf16_autocast_loss_agrees_with_fp32(tiny_options, random_inputs):
    torch.manual_seed(0)
    model = avadapt.create_model(method="stg_cma", drop_path=0.0, **tiny_options).eval()
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_(std=0.05)
    video, audio = random_inputs()
    labels = {"labels": torch.randint(0, 29, (2, TINY_FRAMES))}
    fp32 = model.head.loss(model(video, audio), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.head.loss(model(video, audio), labels)
    assert abs(fp32.item() - bf16.item()) < 0.02 * fp32.item()


@pytest.mark.parametrize("backbone,ratio,expected", [
    ("vit_base_patch16_clip_224", "1/32", 3.53e6),
    ("vit_base_patch16_clip_224", "1/8", 11.50e6),
    ("vit_large_patch14_clip_224", "1/32", 10.68e6),
    ("vit_large_patch14_clip_224", "1/16", 20.12e6),
])
def test_trainable_counts_match_the_official_code(backbone, ratio, expected):
    report = parameter_report(build_without_weights(backbone=backbone, method="stg_cma", task="ave", ratio=ratio))
    assert abs(report["trainable"] - expected) <= 0.005e6
    assert report["trainable"] == sum(report["breakdown"].values())


def test_presets_and_ratio_are_exclusive_and_validated():
    from avadapt.methods.stg_cma import STGCMAConfig

    assert STGCMAConfig(preset="tiny").bottleneck_ratio == 1 / 32
    assert STGCMAConfig().bottleneck_ratio == 1 / 16
    assert STGCMAConfig(ratio="1/8").bottleneck_ratio == 0.125
    with pytest.raises(ValueError, match="not both"):
        STGCMAConfig(preset="tiny", ratio=0.1)
    with pytest.raises(ValueError, match="unknown STG-CMA preset"):
        STGCMAConfig(preset="huge")
    with pytest.raises(ValueError, match="fusion"):
        STGCMAConfig(fusion="sideways")
    with pytest.raises(TypeError, match="no option"):
        STGCMAConfig.from_dict({"ratio": 0.1, "rattio": 0.2})
    assert STGCMAConfig.from_dict(STGCMAConfig(ratio="1/8").to_dict()) == STGCMAConfig(ratio=0.125)


def test_unknown_option_names_the_known_ones(tiny_options):
    with pytest.raises(TypeError, match="unknown option.*bottleneck"):
        avadapt.create_model(method="stg_cma", bottleneck=3, **tiny_options)
    with pytest.raises(OptionError, match="unknown method 'lora'"):
        avadapt.create_model(method="lora", **tiny_options)


def test_wrong_segment_count_is_a_clear_error(tiny_options, random_inputs):
    model = avadapt.create_model(method="stg_cma", **tiny_options)
    video, audio = random_inputs()
    with pytest.raises(ValueError, match="T=3"):
        model(video[:, :2], audio[:, :2])
