"""DG-SCT with a separate frozen audio encoder: pairing, identity at init, guidance maps, alignment, freezing,
adapter save/load, and the full-size parameter count."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import avadapt
from avadapt.adapter_files import BackboneFileError, RandomBackboneWarning, load_adapter, save_adapter
from avadapt.backbones import create_audio_backbone
from avadapt.cli import main
from avadapt.errors import OptionError
from avadapt.methods.dg_sct import (
    DGSCTAdapter,
    DGSCTConfig,
    DualGuidance,
    GridResizeAlignment,
    GuidedTemporalAttention,
    TokenAxisAlignment,
    TokenLayout,
    pair_blocks,
)
from avadapt.models import build_without_weights, parameter_report
from tests.zoo import _WEIGHTS_DIR, BATCH, FRAMES, TINY_BACKBONES, backbone_weights, randomize_norms

pytestmark = pytest.mark.usefixtures("one_thread")

AUDIO_SWIN = "swin_tiny_patch4_window7_224"
AUDIO_SIZE = 32
# Two stages against the visual tiny Swins' (2, 2): stage 2 has one audio block for two visual ones, so visual
# block 2 runs unadapted; 16 wide where the visual encoders are 32 (Swin) or 64 (ViT) wide.
AUDIO_OPTIONS = {"embed_dim": 16, "depths": (2, 1), "num_heads": (1, 2), "img_size": AUDIO_SIZE, "window_size": 4,
                 "in_chans": 1}


@functools.cache
def audio_weights(seed: int = 0) -> Path:
    """Random weights of the tiny audio Swin with random LayerNorm affines, written once per session."""
    torch.manual_seed(100 + seed)
    timm_model = create_audio_backbone(AUDIO_SWIN, **AUDIO_OPTIONS).model
    randomize_norms(timm_model, 100 + seed)
    path = Path(_WEIGHTS_DIR.name) / f"audio-swin-{seed}.safetensors"
    save_file(timm_model.state_dict(), str(path))
    return path


def build(family: str = "swinv2", audio_options: dict | None = None, backbone_options: dict | None = None,
          **options) -> avadapt.AVModel:
    name, visual_options = TINY_BACKBONES[family]
    visual_options = {k: v for k, v in visual_options.items() if k != "audio"}
    torch.manual_seed(0)
    return avadapt.create_model(
        backbone=name, method="dg_sct", task="ave", weights=backbone_weights(family), num_frames=FRAMES,
        backbone_options={**visual_options, **(backbone_options or {})}, audio_backbone=AUDIO_SWIN,
        audio_weights=audio_weights(), audio_backbone_options={**AUDIO_OPTIONS, **(audio_options or {})}, **options)


def inputs(model: avadapt.AVModel, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    height, width = model.backbone.model.patch_embed.img_size
    return (torch.randn(BATCH, FRAMES, 3, height, width, generator=g),
            torch.randn(BATCH, FRAMES, 1, AUDIO_SIZE, AUDIO_SIZE, generator=g))


def frozen_audio_maps(model: avadapt.AVModel, audio: torch.Tensor, final_norm: bool = False) -> list[torch.Tensor]:
    """The audio Swin's stage outputs by timm's own modules: (B, T, N_s, D_s). DG-SCT pools its audio tokens as
    the last stage leaves them, without the encoder's final norm (``final_norm=True`` applies it)."""
    timm_model = model.audio_backbone.model
    x = timm_model.patch_embed(audio.flatten(0, 1))  # (S, H, W, C)
    maps = []
    for layer in timm_model.layers:
        x = layer(x)
        maps.append(x)
    if final_norm:
        maps[-1] = timm_model.norm(maps[-1])
    return [m.reshape(BATCH, FRAMES, -1, m.shape[-1]) for m in maps]


def frozen_visual_features(family: str, video: torch.Tensor, audio: torch.Tensor):
    """The visual backbone alone (the probe on the same weights), in eval mode."""
    name, visual_options = TINY_BACKBONES[family]
    probe = avadapt.create_model(backbone=name, method="probe", task="ave", weights=backbone_weights(family),
                                 num_frames=FRAMES, backbone_options=visual_options, branches="visual_only")
    return probe.eval().features(video, None)


# --- pairing ------------------------------------------------------------------------------------------------


def test_pairing_of_swinv2_large_against_htsat_follows_the_reference():
    pairs = pair_blocks((2, 2, 18, 2), (2, 2, 6, 2))
    # stages 1-2 block for block; stage 3 (visual blocks 4…21): audio block 4 + k with visual block 4 + 3k + 2
    expected = [(0, 0), (1, 1), (2, 2), (3, 3), (6, 4), (9, 5), (12, 6), (15, 7), (18, 8), (21, 9), (22, 10),
                (23, 11)]
    assert pairs == expected and len(pairs) == 12


def test_pairing_of_tiny_and_mismatched_encoders():
    assert pair_blocks((2, 2), (2, 1)) == [(0, 0), (1, 1), (3, 2)]  # visual block 2 unadapted
    assert pair_blocks((2, 2), (2, 2)) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # a one-stage ViT against a multi-stage Swin: the flattened block lists, 6 against 3
    assert pair_blocks((6,), (2, 1)) == [(1, 0), (3, 1), (5, 2)]
    assert pair_blocks((12,), (2, 2, 6, 2)) == [(k, k) for k in range(12)]
    # a deeper audio side leaves audio blocks unadapted instead
    assert pair_blocks((1, 2), (3, 2)) == [(0, 2), (1, 3), (2, 4)]
    with pytest.raises(ValueError):
        pair_blocks((-1,), (2,))


@pytest.mark.parametrize("family,pairs", [("vit", [(1, 0), (3, 1), (5, 2)]), ("swinv2", [(0, 0), (1, 1), (3, 2)])])
def test_model_pairs_its_encoders_blocks(family, pairs):
    model = build(family)
    assert model.method.pairs == pairs and len(model.method.blocks) == 3


# --- identity at init, freezing -------------------------------------------------------------------------------


# the AVQA, S4 and MS3 presets leave the audio adapters ungated, as their code: gated here to test the identity
@pytest.mark.parametrize("options", [{}, {"preset": "s4", "audio_gate": True}, {"temporal": "adapter"},
                                     {"preset": "avqa", "conv_groups": 2, "audio_gate": True},
                                     {"preset": "ms3", "audio_gate": True}])
@pytest.mark.parametrize("family", ["vit", "swin", "swinv2"])
def test_encoders_start_as_the_frozen_ones_and_features_are_guided_pools_of_them(family, options):
    """Zero output gates: every token map equals the frozen encoders' (eval and train mode, BatchNorm on batch
    statistics in the latter); the per-segment vectors are the frozen final tokens pooled by the maps P, the
    visual ones after the visual encoder's final norm, the audio ones without the audio encoder's."""
    model = build(family, **options)
    video, audio = inputs(model)
    visual = frozen_visual_features(family, video, audio)
    audio_maps = frozen_audio_maps(model, audio)
    for train_mode in (False, True):
        model.train(train_mode)
        with torch.no_grad():
            ours = model.features(video, audio)
            _, pooling = model.method.encode(video, audio)
        for mine, frozen in zip(ours.video_maps, visual.video_maps, strict=True):
            torch.testing.assert_close(mine, frozen, rtol=0, atol=1e-5)
        for mine, frozen in zip(ours.audio_maps, audio_maps, strict=True):
            torch.testing.assert_close(mine, frozen, rtol=0, atol=1e-5)
        # the final visual tokens with the class token a ViT's pooling map also weighs
        name, visual_options = TINY_BACKBONES[family]
        final_visual = visual.video_maps[-1]
        if family == "vit":
            probe = avadapt.create_model(backbone=name, method="probe", task="ave",
                                         weights=backbone_weights(family), num_frames=FRAMES,
                                         backbone_options=visual_options, branches="visual_only").eval()
            encoded = probe.method.encode_stages(probe.method.embed(video, None))["video"][-1]
            final_visual = probe.backbone.final_norm(encoded).view(BATCH, FRAMES, *encoded.shape[1:])
        p_video = pooling["video"].view(BATCH, FRAMES, -1, 1)
        p_audio = pooling["audio"].view(BATCH, FRAMES, -1, 1)
        torch.testing.assert_close(ours.video, (p_video * final_visual).sum(2), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.audio, (p_audio * audio_maps[-1]).sum(2), rtol=0, atol=1e-5)
    # the audio encoder's final norm (random affine weights here) is not what was pooled
    normed = frozen_audio_maps(model, audio, final_norm=True)[-1]
    assert not torch.allclose(ours.audio, (p_audio * normed).sum(2), atol=1e-2)


def test_without_guidance_features_are_the_frozen_encoders_mean_pools():
    model = build("swinv2", guidance=False)
    video, audio = inputs(model)
    ours = model.train().features(video, audio)
    torch.testing.assert_close(ours.video, frozen_visual_features("swinv2", video, audio).video, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.audio, frozen_audio_maps(model, audio)[-1].mean(2), rtol=0, atol=1e-5)
    normed = frozen_audio_maps(model, audio, final_norm=True)[-1].mean(2)
    assert not torch.allclose(ours.audio, normed, atol=1e-2)


@pytest.mark.parametrize("family", ["vit", "swinv2"])
def test_only_trainable_parameters_get_gradients_and_both_encoders_stay_frozen(family):
    model = build(family, temporal="adapter")
    model.train()
    encoders = (model.method.backbone, model.method.audio_encoder)
    assert model.method.audio_encoder is not None and model.audio_backbone is model.method.audio_encoder
    for encoder in encoders:
        assert not any(p.requires_grad for p in encoder.parameters())
        assert not any(m.training for m in encoder.model.modules()), "a frozen encoder left eval mode"
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith(("method.backbone.", "method.audio_encoder.")) for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    video, audio = inputs(model)
    outputs = model(video, audio)  # the paper's AVE head: CMBS
    assert model.task.segment_probabilities(outputs).shape == (BATCH, FRAMES, 29)
    model.head.loss(outputs, {"labels": torch.randint(0, 29, (BATCH, FRAMES))}).backward()
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    gates = [n for n, p in trainable.items() if n.endswith("adapters.video.gate") and p.grad.abs().sum() > 0]
    assert gates, "the zero output gates must receive gradient"
    torch.optim.AdamW(trainable.values(), lr=1e-2).step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"frozen {name} changed"


def test_frozen_encoders_keep_eval_behaviour_under_model_train():
    """Stochastic depth configured in both timm encoders never fires: the frozen encoders stay in eval mode."""
    model = build("swinv2", audio_options={"drop_path_rate": 0.5}, backbone_options={"drop_path_rate": 0.5})
    model.train()
    video, audio = inputs(model)
    with torch.no_grad():
        first, second = model.features(video, audio), model.features(video, audio)
    for a, b in zip(first.video_maps + first.audio_maps, second.video_maps + second.audio_maps):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    losses, grads = [], []
    for checkpointing in (False, True):
        model = build("swinv2", activation_checkpointing=checkpointing)
        with torch.no_grad():  # open the gates so that adapters matter
            for name, p in model.named_parameters():
                if p.requires_grad and name.endswith("gate"):
                    p.fill_(0.5)
        model.train()
        video, audio = inputs(model)
        loss = model.head.loss(model(video, audio), {"labels": torch.arange(BATCH * FRAMES).view(BATCH, FRAMES) % 29})
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[0], losses[1])
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options", [{"preset": "s4"}, {"preset": "ms3"}, {"preset": "avqa", "conv_groups": 2}])
def test_presets_with_ungated_audio_adapters_change_only_the_audio_stream_at_init(options):
    """The AVQA, S4 and MS3 code builds its audio adapters without an output gate: the visual stream starts as
    the frozen encoder's, the audio stream does not (as LAVISH's AVS preset)."""
    model = build("swinv2", **options)
    assert all(block.attention_adapters["audio"].gate is None and block.ffn_adapters["audio"].gate is None
               and block.attention_adapters["video"].gate is not None for block in model.method.blocks)
    video, audio = inputs(model)
    with torch.no_grad():
        ours = model.eval().features(video, audio)
        frozen_audio = frozen_audio_maps(model, audio)
    for mine, frozen in zip(ours.video_maps, frozen_visual_features("swinv2", video, audio).video_maps, strict=True):
        torch.testing.assert_close(mine, frozen, rtol=0, atol=1e-5)
    assert not torch.allclose(ours.audio_maps[-1], frozen_audio[-1], atol=1e-3)


# --- modules ------------------------------------------------------------------------------------------------


def test_guidance_maps_have_the_papers_shapes_ranges_and_formula():
    torch.manual_seed(0)
    guidance = DualGuidance(8)
    x, summary = torch.randn(5, 6, 8), torch.randn(5, 1, 8)
    channel, spatial = guidance(x, summary)
    assert channel.shape == (5, 1, 8) and spatial.shape == (5, 6, 1)
    assert ((channel > 0) & (channel < 1)).all()
    assert ((torch.sigmoid(spatial) > 0) & (torch.sigmoid(spatial) < 1)).all()
    g = guidance
    joint = F.relu(summary @ g.other_channel.weight.T + g.other_channel.bias) * F.relu(
        x @ g.own_channel.weight.T + g.own_channel.bias)
    squeezed = F.relu(joint.mean(1, keepdim=True) @ g.channel_squeeze.weight.T + g.channel_squeeze.bias)
    c = torch.sigmoid(squeezed @ g.channel_excite.weight.T + g.channel_excite.bias)
    s = (F.relu((x * (1 + c)) @ g.own_spatial.weight.T + g.own_spatial.bias)
         * F.relu(summary @ g.other_spatial.weight.T + g.other_spatial.bias)) @ g.spatial_logit.weight.T
    torch.testing.assert_close(channel, c)
    torch.testing.assert_close(spatial, s + g.spatial_logit.bias)


def _per_token(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """A grouped 1×1 convolution without bias as the per-token map it is: (S, N, D) → (S, N, D')."""
    return F.conv1d(x.transpose(1, 2), conv.weight, groups=conv.groups).transpose(1, 2)


@pytest.mark.parametrize("preset", ["ave", "avqa", "s4", "ms3"])
def test_bottleneck_norms_and_gate_sit_where_each_tasks_reference_puts_them(preset):
    """AVE and AVQA: g · LN(up(ReLU(down(LN(x))))); S4 and MS3: LN(g · up(ReLU(down(x)))), no LN before; written
    out from the adapter's weights (all random, gate included). A layout with the gate or the first LN moved
    gives another output."""
    torch.manual_seed(0)
    config = DGSCTConfig(preset=preset, batch_norm=False, ratio="1/2")
    adapter = DGSCTAdapter(TokenLayout((4, 4), 16), TokenLayout((2, 2), 8), config, num_frames=2)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(3, 16, 16)
    b, g = adapter.bottleneck, adapter.gate

    def norm(layer, h):
        return F.layer_norm(h, (16,), layer.weight, layer.bias, layer.eps)

    def project(h):
        return _per_token(F.relu(_per_token(h, b.down)), b.up)

    avs_layout = norm(b.norm_after, g * project(x))
    if preset in ("s4", "ms3"):
        assert isinstance(b.norm_before, torch.nn.Identity)
        expected, other = avs_layout, g * norm(b.norm_after, project(x))
    else:
        expected = g * norm(b.norm_after, project(norm(b.norm_before, x)))
        other = g * norm(b.norm_after, project(x))  # without the first LN
    with torch.no_grad():
        torch.testing.assert_close(adapter.gated_bottleneck(x), expected)
        assert not torch.allclose(adapter.gated_bottleneck(x), other, atol=1e-3)
        g.zero_()  # either order adds nothing while the gate is 0 (and the closing LN's bias at its initial 0)
        b.norm_after.bias.zero_()
        assert torch.count_nonzero(adapter.gated_bottleneck(x)) == 0


def test_layout_presets_and_latent_initialisation_follow_the_reference():
    layout = {name: (c.norm_before, c.gate_before_norm, c.audio_gate, c.latent_init)
              for name in ("ave", "avvp", "avqa", "s4", "ms3") for c in [DGSCTConfig(preset=name)]}
    assert layout == {"ave": (True, False, True, "uniform"), "avvp": (True, False, True, "uniform"),
                      "avqa": (True, False, False, "zeros"), "s4": (False, True, False, "zeros"),
                      "ms3": (False, True, False, "zeros")}
    model = build("swinv2", preset="avqa", conv_groups=2)  # the tiny widths do not split into 4 groups
    latent = [a.fusion.latent_tokens for a in model.method.modules() if isinstance(a, DGSCTAdapter)]
    assert latent and all(torch.count_nonzero(tokens) == 0 for tokens in latent)


def test_pooling_maps_are_distributions_over_each_modalitys_final_tokens():
    model = build("vit")
    video, audio = inputs(model)
    with torch.no_grad():
        _, pooling = model.method.encode(video, audio)
    n_video = 1 + 2 * 2  # class token + the 32-pixel ViT's 2×2 patches of 16 pixels
    n_audio = 4 * 4  # the audio Swin's last stage: 32 / 4 / 2 = 4² tokens
    assert pooling["video"].shape == (BATCH * FRAMES, n_video) and pooling["audio"].shape == (BATCH * FRAMES, n_audio)
    for p in pooling.values():
        assert (p > 0).all()
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[0]))


def test_token_axis_alignment_mixes_tokens_then_channels():
    torch.manual_seed(0)
    align = TokenAxisAlignment(TokenLayout((4, 4), 6), TokenLayout((2, 3), 10, prefix=1))
    y = torch.randn(3, 16, 6)
    out = align(y)
    assert out.shape == (3, 7, 10)
    conv = align.token_mixing
    mixed = torch.einsum("nm,smd->snd", conv.weight[:, :, 0], y) + conv.bias[None, :, None]  # (S, 7, 6)
    torch.testing.assert_close(out, mixed @ align.projection.weight.T + align.projection.bias)
    assert conv.weight.numel() == 16 * 7 and conv.bias is not None


def test_grid_resize_alignment_projects_then_resizes_bicubically():
    torch.manual_seed(0)
    other, own = TokenLayout((4, 4), 6), TokenLayout((2, 2), 10, prefix=1)
    align = GridResizeAlignment(other, own)
    y = torch.randn(3, 16, 6)
    out = align(y)
    assert out.shape == (3, 5, 10)
    projected = align.projection(y).transpose(1, 2).reshape(3, 10, 4, 4)
    expected = F.interpolate(projected, size=(2, 2), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out[:, 1:], expected)
    torch.testing.assert_close(out[:, 0], expected.mean(1))  # no class token on the other side
    back = GridResizeAlignment(own, TokenLayout((4, 4), 6))
    assert back(torch.randn(3, 5, 10)).shape == (3, 16, 6)  # class token dropped, 2² grid up to 4²


def test_guided_temporal_attention_mixes_segments_once_its_gate_opens():
    torch.manual_seed(0)
    temporal = GuidedTemporalAttention(8, num_frames=4)
    x, summary = torch.randn(2 * 4, 5, 8), torch.randn(2 * 4, 1, 8)
    torch.testing.assert_close(temporal(x, summary), x, rtol=0, atol=0)  # zero gate
    with torch.no_grad():
        temporal.gate.fill_(1.0)
    changed = x.clone()
    changed[0] += 1.0  # segment 0 of clip 0
    delta = (temporal(changed, summary) - temporal(x, summary)).abs().sum((1, 2))
    assert (delta[:4] > 0).all() and (delta[4:] == 0).all()  # every segment of clip 0, none of clip 1
    own = x.mean(1).view(2, 4, 8)
    q, k = temporal.query(summary.view(2, 4, 8)), temporal.key(own)
    expected = x + ((q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1) @ own).reshape(8, 1, 8)
    torch.testing.assert_close(temporal(x, summary), expected)


def test_presets_and_validation():
    assert (DGSCTConfig(preset="s4").alignment, DGSCTConfig(preset="ave").alignment) == ("resize", "conv")
    assert DGSCTConfig(preset="avqa").num_latent_tokens == 2 and DGSCTConfig().num_latent_tokens == 32
    assert (DGSCTConfig().alpha, DGSCTConfig().beta) == (0.3, 0.05)
    assert (DGSCTConfig(preset="ms3").alpha, DGSCTConfig(preset="ms3").beta) == (0.2, 0.1)
    assert DGSCTConfig(preset="ms3", alpha=0.5).alpha == 0.5
    assert DGSCTConfig.from_dict(DGSCTConfig(preset="s4").to_dict()) == DGSCTConfig(preset="s4")
    for bad in ({"preset": "nope"}, {"temporal": "middle"}, {"alignment": "pool"}, {"alpha": 2.0}):
        with pytest.raises(OptionError):
            DGSCTConfig(**bad)


# --- two-encoder plumbing -------------------------------------------------------------------------------------


def test_feature_spec_and_head_see_both_widths():
    model = build("vit", head="classifier")
    spec = model.method.feature_spec()
    assert (spec.dim, spec.audio_dim) == (64, 32)
    assert spec.map_dims == (64,) * 4 and spec.audio_map_dims == (16, 32)
    assert spec.audio_map_strides == (4, 8)
    assert model.head.classifier[0].in_features == 64 + 32
    video, audio = inputs(model)
    features = model.features(video, audio)
    assert features.video.shape == (BATCH, FRAMES, 64) and features.audio.shape == (BATCH, FRAMES, 32)


def test_create_model_refuses_a_second_encoder_where_the_method_cannot_take_one():
    name, visual_options = TINY_BACKBONES["vit"]
    with pytest.raises(OptionError, match="dg_sct"):
        avadapt.create_model(backbone=name, method="lavish", task="ave", backbone_options=visual_options,
                             audio_backbone=AUDIO_SWIN, audio_backbone_options=AUDIO_OPTIONS)
    with pytest.raises(OptionError, match="audio_backbone="):
        avadapt.create_model(backbone=name, method="dg_sct", task="ave", backbone_options=visual_options,
                             audio_backbone_options=AUDIO_OPTIONS)


def test_adapter_round_trip_with_a_separate_audio_encoder(tmp_path, capsys):
    model = build("swinv2", temporal="adapter")
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_(0, 0.05)
    model.eval()
    video, audio = inputs(model)
    with torch.no_grad():
        before = model(video, audio)
    source = {"pretrained": False, "weights": str(backbone_weights("swinv2")), "audio_weights": str(audio_weights())}
    save_adapter(model, tmp_path / "adapter", backbone_source=source)
    config = (tmp_path / "adapter" / "config.json").read_text()
    assert '"audio_backbone": "swin_tiny_patch4_window7_224"' in config
    keys = load_file(str(tmp_path / "adapter" / "adapter.safetensors")).keys()
    assert not any(k.startswith(("method.backbone.", "method.audio_encoder.")) for k in keys)
    loaded = load_adapter(tmp_path / "adapter")
    assert loaded.method.audio_encoder is not None
    with torch.no_grad():
        torch.testing.assert_close(loaded(video, audio), before, rtol=0, atol=0)
    # the recorded audio weights file gone: loading stops naming it
    config = json.loads((tmp_path / "adapter" / "config.json").read_text())
    config["backbone_source"]["audio_weights"] = str(tmp_path / "gone.safetensors")
    (tmp_path / "adapter" / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackboneFileError, match=f"{tmp_path / 'gone.safetensors'}: audio encoder weights file "
                                                "recorded by the adapter .* not found"):
        load_adapter(tmp_path / "adapter")
    # `avadapt predict --audio-weights` names the file in its place: a missing one stops the command naming it
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "clip.mp4"), "--adapter", str(tmp_path / "adapter"),
              "--audio-weights", str(tmp_path / "moved.safetensors")])
    assert f"{tmp_path / 'moved.safetensors'}: audio encoder weights file not found" in capsys.readouterr().err
    relocated = load_adapter(tmp_path / "adapter", audio_weights=audio_weights())
    with torch.no_grad():
        torch.testing.assert_close(relocated(video, audio), before, rtol=0, atol=0)
    # an adapter that records no hash of it (written before hashes were kept): random, and loading says so
    del config["backbone_source"]["audio_weights_sha256"]
    (tmp_path / "adapter" / "config.json").write_text(json.dumps(config))
    with pytest.warns(RandomBackboneWarning, match="audio encoder"):
        load_adapter(tmp_path / "adapter")


# --- parameter count ------------------------------------------------------------------------------------------


def _adapter_counts(visual: tuple[int, int], audio: tuple[int, int], m: int = 32) -> dict[str, int]:
    """Analytic counts of the four adapters of one paired block, (tokens, width) per side."""
    (n_v, d_v), (n_a, d_a) = visual, audio

    def guidance(d: int) -> int:
        h = d // 2
        return 2 * (d * d + d) + (d * h + h) + (h * d + d) + 2 * (d * h + h) + (h + 1)

    def lavish(d: int) -> int:  # latent tokens + g_av, LN, grouped convs (D/8, 2 groups), 2 BN, LN, gate
        r = d // 8
        return m * d + 1 + 2 * d + d * r // 2 + 2 * r + r * d // 2 + 2 * d + 2 * d + 1

    return {
        "adapters: token-axis convs": 2 * ((n_a * n_v + n_v) + (n_v * n_a + n_a)),
        "adapters: cross-modal linears": 2 * ((d_a * d_v + d_v) + (d_v * d_a + d_a)),
        "adapters: guidance linears": 2 * (guidance(d_v) + guidance(d_a)),
        "LAVISH": 2 * (lavish(d_v) + lavish(d_a)),
    }


def test_full_size_count_matches_the_analytic_count_of_the_reference():
    """Swin-V2-L/192 beside an HTS-AT-shaped Swin (256², window 8, 96…768, depths 2/2/6/2), AVE preset.

    Reference figures (shared/reference/methods.md §2): token-axis convs 81.2M, cross-modal Linears 17.3M,
    guidance 86.4M, LAVISH part 3.7M."""
    model = build_without_weights(backbone="swinv2_large_window12_192", method="dg_sct", task="ave",
                                  audio_backbone="htsat")
    report = parameter_report(model)
    stages = [((48 ** 2, 192), (64 ** 2, 96), 2), ((24 ** 2, 384), (32 ** 2, 192), 2),
              ((12 ** 2, 768), (16 ** 2, 384), 6), ((6 ** 2, 1536), (8 ** 2, 768), 2)]
    expected: dict[str, int] = {}
    for visual, audio, pairs in stages:
        for role, count in _adapter_counts(visual, audio).items():
            expected[role] = expected.get(role, 0) + pairs * count
    breakdown = report["breakdown"]
    lavish = sum(v for k, v in breakdown.items() if "LAVISH" in k)
    for role in ("adapters: token-axis convs", "adapters: cross-modal linears", "adapters: guidance linears"):
        assert breakdown[role] == expected[role], role
    assert lavish == expected["LAVISH"]
    assert round(breakdown["adapters: token-axis convs"] / 1e6, 1) == 81.2
    assert round(breakdown["adapters: cross-modal linears"] / 1e6, 1) == 17.3
    assert round(breakdown["adapters: guidance linears"] / 1e6, 1) == 86.4
    assert round(lavish / 1e6, 1) == 3.7
    assert report["trainable"] == sum(breakdown.values())
    assert "audio backbone (trainable part)" not in breakdown  # frozen: 0 is dropped
    # with the CMBS head (temporal module 7,859,842 + scores 21,845): exactly the part of the official AVE model
    # that receives gradients; the total leaves out the 21k-class head, HTS-AT's STFT/mel layers and classifier
    assert breakdown["head"] == 7_881_687
    assert (report["trainable"], report["total"]) == (196_420_503, 419_157_923)


def test_params_command_counts_dg_sct_beside_the_papers_audio_encoder_unless_told_otherwise(capsys):
    from avadapt import cli

    cli.main(["params", "--backbone", "test_vit", "--method", "dg_sct", "--json"])
    beside = json.loads(capsys.readouterr().out)
    assert beside["audio_backbone"] == "htsat"
    assert beside["trainable"] == sum(beside["breakdown"].values())
    assert beside["breakdown"]["adapters: token-axis convs"] > 0 and beside["breakdown"]["adapters: guidance linears"] > 0
    cli.main(["params", "--backbone", "test_vit", "--method", "dg_sct", "--audio-backbone", "shared", "--json"])
    shared = json.loads(capsys.readouterr().out)
    assert "audio_backbone" not in shared and shared["total"] < beside["total"]


def test_training_module_builds_dg_sct_with_its_audio_encoder_and_records_its_weights():
    from avadapt.training import AVAdaptModule

    name, visual_options = TINY_BACKBONES["vit"]
    module = AVAdaptModule(
        backbone=name, method="dg_sct", task="ave", backbone_options={"img_size": visual_options["img_size"]},
        method_options={"num_frames": FRAMES}, audio_front_end="vit",
        fbank={"num_mel_bins": AUDIO_SIZE, "target_frames": AUDIO_SIZE}, audio_backbone=AUDIO_SWIN,
        audio_weights=str(audio_weights()), audio_backbone_options=AUDIO_OPTIONS)
    assert module.model.method.audio_encoder is not None
    assert module.backbone_source == {"pretrained": False, "weights": None, "audio_weights": str(audio_weights())}
    video, audio = inputs(module.model)
    assert module.model.task.segment_probabilities(module(video, audio)).shape == (BATCH, FRAMES, 29)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["ave/swinv2_l_htsat_dg_sct.yaml", "avqa/swinv2_l_htsat_dg_sct.yaml",
                                    "avs/swinv2_l_htsat_dg_sct_s4.yaml", "avs/swinv2_l_htsat_dg_sct_ms3.yaml",
                                    "ave/swinv2_l_htsat_lavish_star.yaml"])
def test_paper_configs_build_the_model_their_header_counts(config):
    """Each DG-SCT config builds (weightless) beside HTS-AT from its own front end; where its header states a
    trainable count, the model has it."""
    import re

    import yaml

    from avadapt.tasks import get_task

    path = Path(__file__).resolve().parents[1] / "configs" / config
    model_section = yaml.safe_load(path.read_text())["model"]
    task = model_section["task"]
    task_options = {**(model_section.get("task_options") or {}), **get_task(task).counting_options}
    model = build_without_weights(
        backbone=model_section["backbone"], method=model_section["method"], task=task,
        audio_backbone=model_section["audio_backbone"], audio_front_end=model_section["audio_front_end"],
        **(model_section.get("method_options") or {}), **task_options)
    assert model.spec["audio_backbone"] == "htsat" and model.audio_backbone.name == "htsat"
    stated = re.search(r"([\d.]+)M trainable", path.read_text())
    if stated:
        assert f"{parameter_report(model)['trainable'] / 1e6:.2f}" == stated.group(1)
