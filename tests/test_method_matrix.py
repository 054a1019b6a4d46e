"""Every registered method × backbone family × its switches, on tiny random backbones.

Adding a method means adding its row to ``SWITCHES`` (a test fails until it is there) and, if it starts
as the frozen backbone, to ``IDENTITY_AT_INIT``; a method that cannot start as the frozen backbone says why
in ``NOT_IDENTITY``.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from avadapt._registry import METHODS
from tests.zoo import BATCH, FRAMES, TINY_BACKBONES, build, inputs

FAMILIES = tuple(TINY_BACKBONES)


pytestmark = pytest.mark.usefixtures("one_thread")


SWITCHES: dict[str, list[dict]] = {
    "probe": [{}, {"branches": "audio_only"}, {"branches": "visual_only"}, {"full_finetune": True}],
    "stg_cma": [{}, {"fusion": "none"}, {"fusion": "audio_to_visual"}, {"temporal_adaptation": False},
                {"spatial_adaptation": False, "global_adaptation": False}, {"preset": "tiny", "ratio": None},
                {"branches": "audio_only"}, {"branches": "visual_only"}, {"tune_final_norm": False},
                {"full_finetune": True}],
    "lavish": [{}, {"preset": "avs"}, {"preset": "avqa"}, {"cross_modal_fusion": False},
               {"branches": "audio_only"}, {"branches": "visual_only"}, {"full_finetune": True}],
    "av_stfp": [{}, {"temporal_prompts": False}, {"spatial_prompts": False}, {"fusion_prompts": False},
                {"prompted": "audio_only"}, {"prompted": "visual_only"}, {"branches": "visual_only"},
                {"timeline": "class_tokens"}, {"prompt_attention": "shared"}, {"full_finetune": True}],
    # one shared backbone here; the separate audio encoder of the paper: tests/test_dg_sct.py
    "dg_sct": [{}, {"preset": "s4"}, {"preset": "avqa", "conv_groups": 2}, {"temporal": "adapter"},
               {"guidance": False},
               {"activation_checkpointing": True}],
}
# Which families a method supports; the others must refuse with a clear error.
SUPPORTED: dict[str, tuple[str, ...]] = {"av_stfp": ("vit",)}

IDENTITY_AT_INIT: dict[str, list[dict]] = {
    "stg_cma": [{}, {"fusion": "none"}, {"branches": "audio_only"}],
    "lavish": [{}, {"preset": "avqa"}, {"cross_modal_fusion": False}, {"branches": "visual_only"}],
    # With guidance the per-segment vectors are pooled by learnt maps, not the frozen pooling; its token maps
    # still equal the frozen ones (tests/test_dg_sct.py checks both).
    "dg_sct": [{"guidance": False}, {"guidance": False, "temporal": "adapter"}],
    "av_stfp": [{}, {"timeline": "class_tokens"}, {"prompted": "audio_only"}],
}
NOT_IDENTITY = {
    "probe": "it is the frozen backbone (checked against timm's own forward below)",
}


def cases():
    for method, switches in SWITCHES.items():
        for family in FAMILIES:
            for options in switches:
                yield pytest.param(method, family, options, id=f"{method}-{family}-{options}")


def supported(method: str, family: str) -> bool:
    return family in SUPPORTED.get(method, FAMILIES)


def with_options(method: str, options: dict) -> dict:
    # STG-CMA's small tiny-model widths: an explicit ratio keeps every bottleneck ≥ 2 wide on a ViT.
    if method == "stg_cma" and "ratio" not in options and "preset" not in options:
        options = {"ratio": "1/8", **options}
    return {k: v for k, v in options.items() if v is not None}


def test_every_registered_method_has_a_matrix_row():
    import avadapt.models  # noqa: F401 - registers every method, as create_model's callers get them
    assert set(METHODS.names()) == set(SWITCHES), "add the new method's switches to SWITCHES"
    assert set(METHODS.names()) == set(IDENTITY_AT_INIT) | set(NOT_IDENTITY)


@pytest.mark.parametrize("method,family,options", list(cases()))
def test_forward_backward_and_only_trainable_parameters_move(method, family, options):
    options = with_options(method, options)
    if not supported(method, family):
        with pytest.raises(ValueError, match="ViT"):
            build(family, method, **options)
        return
    model = build(family, method, **options)
    model.train()
    video, audio = inputs(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    if not options.get("full_finetune"):
        assert not any(m.training for m in model.backbone.model.modules()), "frozen backbone left eval mode"

    outputs = model(video, audio)  # the AVE head the method's paper uses (DG-SCT: CMBS)
    probabilities = model.task.segment_probabilities(outputs)
    assert probabilities.shape == (BATCH, FRAMES, 29) and torch.isfinite(probabilities).all()
    model.head.loss(outputs, {"labels": torch.randint(0, 29, (BATCH, FRAMES))}).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())

    torch.optim.AdamW(trainable.values(), lr=1e-2, weight_decay=0.1).step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"frozen {name} changed"


def _frozen_reference(model, options: dict, family: str):
    """The probe on the same backbone weights, audio entrance and branches: what the frozen backbone returns."""
    probe_options = {k: v for k, v in options.items() if k in ("branches",)}
    return build(family, "probe", audio=model.backbone.audio, **probe_options)


@pytest.mark.parametrize("method,options,family", [
    pytest.param(m, o, f, id=f"{f}-{m}-{o}") for f in FAMILIES for m, rows in IDENTITY_AT_INIT.items() for o in rows
    if supported(m, f)])
def test_new_model_returns_what_the_frozen_backbone_returns(method, options, family):
    """Zero-initialised up-projections / gates: features equal the frozen backbone's, in eval and train mode.

    LAVISH's BatchNorm runs on batch statistics in train mode, yet its output is multiplied by a zero gate,
    so train mode is checked as well. STG-CMA's drop path touches only adapter residuals, zero at init, so it
    stays on. LAVISH's frozen-backbone drop path (the reference's) drops frozen branches in train mode, so it
    is off for the train-mode check (``test_lavish_backbone_drop_path_drops_frozen_branches_in_training_only``).
    """
    options = with_options(method, options)
    if method == "lavish":
        options["backbone_drop_path"] = 0.0
    model = build(family, method, **options)
    reference = _frozen_reference(model, options, family)
    video, audio = inputs(model)
    expected = reference.eval().features(video, audio)
    for train_mode in (False, True):
        ours = model.train(train_mode).features(video, audio)
        for modality in model.method.modalities:
            torch.testing.assert_close(getattr(ours, modality), getattr(expected, modality), rtol=0, atol=1e-5)
        for ours_map, expected_map in zip(ours.video_maps + ours.audio_maps, expected.video_maps + expected.audio_maps):
            torch.testing.assert_close(ours_map, expected_map, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ("swin", "swinv2"))
def test_swin_probe_is_timm_forward_features_average_pooled(family):
    model = build(family, "probe").eval()
    video, audio = inputs(model)
    features = model.features(video, audio)
    timm_model = model.backbone.model
    expected = timm_model.forward_features(video.flatten(0, 1)).mean((1, 2)).view(BATCH, FRAMES, -1)
    torch.testing.assert_close(features.video, expected, rtol=0, atol=1e-6)
    assert [m.shape[2:] for m in features.video_maps] == [(64, 32), (16, 64)]  # per stage (N, D)


@pytest.mark.parametrize("family", ("swin", "swinv2"))
def test_lavish_audio_is_the_tiled_spectrogram_through_the_rgb_network(family):
    """At init, LAVISH's audio features on Swin are timm's forward on the spectrogram repeated over 3 channels.

    (A ViT's audio entrance also refits position embeddings to the spectrogram grid, so timm's own forward
    is no reference there; its kernel reduction is the same ``sum``.)
    """
    model = build(family, "lavish").eval()
    video, audio = inputs(model)
    assert model.backbone.audio.kernel_reduction == "sum"
    tiled = audio.flatten(0, 1).expand(-1, 3, -1, -1)
    expected = model.backbone.model.forward_features(tiled).mean((1, 2)).view(BATCH, FRAMES, -1)
    torch.testing.assert_close(model.features(video, audio).audio, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_lavish_without_audio_gate_is_not_identity_for_audio(family):
    """AVS preset: audio adapters have no output gate (official ``is_gate=0``), so audio changes at init."""
    model = build(family, "lavish", preset="avs")
    reference = _frozen_reference(model, {}, family)
    video, audio = inputs(model)
    ours, expected = model.eval().features(video, audio), reference.eval().features(video, audio)
    torch.testing.assert_close(ours.video, expected.video, rtol=0, atol=1e-5)
    assert not torch.allclose(ours.audio, expected.audio, atol=1e-3)


def test_av_stfp_gates_open_each_prompt_type_and_shared_prompts_change_the_output_at_init():
    """Gated (default): each prompt type moves the output once its gates open. Shared (VPT's way, prompts as
    extra keys of the frozen attention's own softmax): the output differs from step 0 (a zero key still takes
    softmax mass), and with every prompt type off it is the frozen backbone."""
    video, audio = inputs(build("vit", "probe"))
    for kind in ("spatial", "temporal"):
        model = build("vit", "av_stfp", fusion_prompts=False, **{f"{other}_prompts": other == kind
                                                               for other in ("spatial", "temporal")}).eval()
        closed = model.features(video, audio).video
        with torch.no_grad():
            for layer in model.method.layers:
                getattr(layer, f"{kind}_gates")["video"].fill_(1.0)
        assert not torch.allclose(model.features(video, audio).video, closed, atol=1e-3), kind
    model = build("vit", "av_stfp", prompt_attention="shared")
    expected = _frozen_reference(model, {}, "vit").eval().features(video, audio)
    assert not torch.allclose(model.eval().features(video, audio).video, expected.video, atol=1e-3)
    off = build("vit", "av_stfp", prompt_attention="shared", temporal_prompts=False, spatial_prompts=False,
                fusion_prompts=False).eval()
    torch.testing.assert_close(off.features(video, audio).video, expected.video, rtol=0, atol=1e-6)


def test_av_stfp_fusion_prompts_carry_audio_into_the_video_stream_once_their_gates_open():
    model = build("vit", "av_stfp").eval()
    video, audio = inputs(model)
    # at init the zero gates keep the streams apart
    torch.testing.assert_close(model.features(video, audio + 1.0).video, model.features(video, audio).video,
                               rtol=0, atol=0)
    with torch.no_grad():
        for layer in model.method.layers[1:]:  # layer 1 has nothing to receive
            layer.fusion_gates["video"].fill_(1.0)
    base = model.features(video, audio).video
    changed = model.features(video, audio + 1.0).video
    assert not torch.allclose(base, changed, atol=1e-4)
    unfused = build("vit", "av_stfp", fusion_prompts=False).eval()
    torch.testing.assert_close(unfused.features(video, audio).video, unfused.features(video, audio + 1.0).video)


def test_stg_cma_swin_cross_modal_exchange_pairs_windows():
    """With non-zero gates and adapters, audio reaches video only through the window-paired spatial CAIM
    when the global exchange is off: a change confined to one audio window moves only that video window."""
    model = build("swin", "stg_cma", ratio="1/4", global_adaptation=False, temporal_adaptation=False,
                  drop_path=0.0, branches="audio_visual").eval()
    block = model.method.blocks[0]  # stage 1, unshifted: windows are 4×4 tiles of the 8×8 grid
    with torch.no_grad():
        block.gates.video_gate.fill_(1.0)
        for adapters in model.method.blocks:
            for adapter in adapters.spatial_adapters.values():
                adapter.up.weight.normal_(std=0.1)
    handle = block.handle
    video, audio = inputs(model)
    tokens = model.method.embed(video, audio)
    out = block(dict(tokens))
    audio_tokens = tokens["audio"].clone()
    window = audio_tokens.view(-1, 8, 8, audio_tokens.shape[-1])[:, :4, :4]
    # window 0 only; not a constant shift, which the frozen LayerNorm before the attention would remove
    window += torch.randn(window.shape, generator=torch.Generator().manual_seed(0))
    moved = block({"video": tokens["video"], "audio": audio_tokens})
    diff = (moved["video"] - out["video"]).abs().sum(-1).view(-1, 8, 8)
    assert diff[:, :4, :4].sum() > 0 and diff[:, 4:, :].sum() == 0 and diff[:, :, 4:].sum() == 0
    assert handle.windows(tokens["video"]).shape[:2] == (BATCH * FRAMES * 4, 16)


def test_swin_rejects_spectrograms_of_another_size():
    from avadapt.backbones import AudioEmbeddingConfig

    with pytest.raises(ValueError, match="mel bins"):
        build("swin", "probe").backbone.audio = AudioEmbeddingConfig(num_mel_bins=32, num_frames=48)


ROUND_TRIPS = [("stg_cma", "swin", {}), ("stg_cma", "swinv2", {"fusion": "none"}), ("lavish", "swinv2", {}),
               ("lavish", "vit", {"preset": "avqa"}), ("lavish", "swin", {"preset": "avs"}),
               ("av_stfp", "vit", {}), ("probe", "swin", {})]


@pytest.mark.parametrize("method,family,options", [pytest.param(*case, id=f"{case[0]}-{case[1]}-{case[2]}")
                                                   for case in ROUND_TRIPS])
def test_adapter_round_trip(tmp_path, method, family, options):
    """save_adapter → load_adapter rebuilds the model (timm kwargs and audio entrance from the spec) and gives
    bit-identical outputs; LAVISH's BatchNorm running statistics travel with the adapter."""
    from avadapt.adapter_files import load_adapter, save_adapter, trainable_state_keys
    from tests.zoo import backbone_weights

    model = build(family, method, **with_options(method, options))
    video, audio = inputs(model)
    model.train()
    model(video, audio)  # one train-mode pass: BatchNorm statistics move away from their init
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_(0, 0.05)
    model.eval()
    with torch.no_grad():
        before = model(video, audio)
    save_adapter(model, tmp_path / "adapter")
    loaded = load_adapter(tmp_path / "adapter", weights=backbone_weights(family))
    with torch.no_grad():
        assert torch.equal(loaded(video, audio), before)
    assert loaded.backbone.audio == model.backbone.audio
    keys = trainable_state_keys(model)
    backbone_keys = [k for k in keys if k.startswith("method.backbone.")]
    if getattr(model.method.config, "tune_backbone_norms", False):  # LAVISH AVS/AVQA: the backbone's LayerNorms
        norms = {name for name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
        assert backbone_keys and all(k.rsplit(".", 1)[0] in norms for k in backbone_keys)
    else:
        assert not backbone_keys
    if method == "lavish" and model.method.config.batch_norm:
        assert any(k.endswith("running_mean") for k in keys)


def test_lavish_presets_fill_unset_options_and_round_trip():
    from avadapt.methods.lavish import LAVISHConfig

    ave = LAVISHConfig()
    assert (ave.num_latent_tokens, ave.ratio, ave.conv_groups, ave.batch_norm, ave.audio_gate) == (2, 0.125, 2, True, True)
    avs = LAVISHConfig(preset="avs", num_latent_tokens=4)
    assert (avs.num_latent_tokens, avs.ratio, avs.audio_gate, avs.tune_backbone_norms) == (4, 0.25, False, True)
    assert LAVISHConfig.from_dict(avs.to_dict()) == avs
    with pytest.raises(ValueError, match="preset"):
        LAVISHConfig(preset="avvp")
    with pytest.raises(ValueError, match="latent_init"):
        LAVISHConfig(latent_init="normal")
    with pytest.raises(ValueError, match="divisible"):
        build("swin", "lavish", conv_groups=3)


def test_av_stfp_config_validates():
    from avadapt.methods.av_stfp import AVSTFPConfig

    assert AVSTFPConfig.from_dict(AVSTFPConfig(prompted="audio_only").to_dict()) == AVSTFPConfig(prompted="audio_only")
    with pytest.raises(ValueError, match="names no stream"):
        AVSTFPConfig(prompted="audio_only", branches="visual_only")
    with pytest.raises(ValueError, match="num_spatial_prompts"):
        AVSTFPConfig(num_spatial_prompts=0)
    assert AVSTFPConfig(spatial_prompts=False, num_spatial_prompts=0).num_spatial_prompts == 0
    assert AVSTFPConfig.from_dict(AVSTFPConfig(prompt_lr_factor=3.0).to_dict()).prompt_lr_factor == 3.0
    with pytest.raises(ValueError, match="prompt_lr_factor"):
        AVSTFPConfig(prompt_lr_factor=0.0)


def test_lavish_backbone_drop_path_drops_frozen_branches_in_training_only():
    """The reference's Swin-V2 ran with timm's stochastic depth active (0.1): eval mode is the frozen backbone,
    train mode drops whole frozen branches of some frames, never in the first block (rate 0 there)."""
    model = build("swinv2", "lavish")
    assert model.method.config.backbone_drop_path == 0.1
    rates = [block.stochastic_depth.rate for block in model.method.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert all(a < b for a, b in itertools.pairwise(rates))
    reference = _frozen_reference(model, {}, "swinv2")
    video, audio = inputs(model)
    expected = reference.eval().features(video, audio)
    torch.testing.assert_close(model.eval().features(video, audio).video, expected.video, rtol=0, atol=1e-5)
    for block in model.method.blocks:
        block.stochastic_depth.rate = 0.9
    torch.manual_seed(0)
    trained = model.train().features(video, audio)
    assert not torch.allclose(trained.video, expected.video, atol=1e-3)
    assert not model.backbone.model.training  # frozen dropout and norms stay in eval behaviour
