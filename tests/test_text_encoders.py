"""Frozen CLIP and CLAP towers read from files in their released formats (avadapt.text.encoders), checked
against open_clip's own model, RoBERTa run directly, and pooling done by hand; and CLAP's audio front end
against librosa."""

from __future__ import annotations

import json
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avadapt.audio_front_ends import FbankConfig, audio_front_end
from avadapt.backbones import HTSAT_PRESETS, ViTBackbone
from avadapt.checkpoint_files import UnsafeCheckpointError
from avadapt.data.fbank import segment_fbank
from avadapt.errors import CheckpointError, OptionError
from avadapt.text import (
    CLAP_MODELS,
    TINY_CLIP_CONFIG,
    TextEncodersConfig,
    build_text_encoders,
    write_tiny_text_checkpoints,
)
from avadapt.text._optional import MissingExtraError
from avadapt.text.clap_towers import TINY_ROBERTA, build_clap_towers
from avadapt.text.clip_towers import build_clip_towers

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["a photo of a dog barking.", "The sounds of a violin", "héllo 🐕 — engine"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    config = write_tiny_text_checkpoints(tmp_path_factory.mktemp("text"), seed=3)
    clip, clap = build_text_encoders(config)
    return config, clip, clap


def open_clip_reference(path) -> torch.nn.Module:
    """open_clip's own tiny CLIP, loaded by open_clip from ``path``."""
    model = open_clip.CLIP(**TINY_CLIP_CONFIG).eval()
    open_clip.load_checkpoint(model, str(path))
    return model


def clap_file(config) -> dict[str, torch.Tensor]:
    return torch.load(config.clap_weights, map_location="cpu", weights_only=True)["state_dict"]


def test_clip_image_features_are_open_clips_encode_image(tiny):
    config, clip, _ = tiny
    reference = open_clip_reference(config.clip_weights)
    frames = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = reference.encode_image(frames)
        ours = clip.image_features(frames)
    assert ours.shape == (3, 32)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    # the image tower is the timm ViT; open_clip's visual tower is gone
    assert isinstance(clip.visual, ViTBackbone)
    assert not any(isinstance(m, open_clip.transformer.VisionTransformer) for m in clip.modules())
    torch.testing.assert_close(clip.visual_projection.weight, reference.visual.proj.T, atol=0, rtol=0)
    assert clip.visual_projection.bias is None
    assert (clip.image_size, clip.embed_dim, clip.context_length) == (64, 32, 77)
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert clip.logit_scale.ndim == 0 and clip.logit_scale == reference.logit_scale


def test_clip_text_features_are_open_clips_encode_text(tiny):
    config, clip, _ = tiny
    reference = open_clip_reference(config.clip_weights)
    tokens = open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    assert torch.equal(clip.tokenize(TEXTS), tokens)
    with torch.no_grad():
        torch.testing.assert_close(clip.text_features(TEXTS), reference.encode_text(tokens), atol=1e-5, rtol=0)


def test_the_prompt_learners_entrance_gives_the_text_features_and_passes_gradients(tiny):
    _, clip, _ = tiny
    tokens = clip.tokenize(TEXTS)
    embeddings = clip.token_embeddings(tokens)
    assert embeddings.shape == (3, 77, 32)
    torch.testing.assert_close(clip.encode_text_embeddings(embeddings, tokens), clip.text_features(TEXTS),
                               atol=1e-6, rtol=0)
    # learnt context vectors in place of tokens 1..4 receive gradients; the frozen tower does not
    context = torch.zeros(4, 32, requires_grad=True)
    prompted = torch.cat([embeddings[:, :1], context.expand(3, -1, -1), embeddings[:, 5:]], dim=1)
    clip.encode_text_embeddings(prompted, tokens).square().sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in clip.parameters())


def _torchscript(model: torch.nn.Module, path) -> None:
    """An OpenAI-style TorchScript archive: a traced CLIP holding the three extra tensors OpenAI's files hold."""
    for name, value in {"input_resolution": 64, "context_length": 77, "vocab_size": 49408}.items():
        model._buffers[name] = torch.tensor(value)
    torch.jit.trace_module(model, {"encode_image": torch.zeros(1, 3, 64, 64)}, check_trace=False).save(str(path))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name", ["weights.safetensors", "pytorch_model.bin", "state_dict.pt", "wrapped.pt",
                                  "openai_jit.pt"])
def test_clip_files_in_every_released_format_load(tiny, tmp_path, name):
    import safetensors.torch

    config, _, _ = tiny
    reference = open_clip_reference(config.clip_weights)
    state = {k: v.clone().contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / name
    if name.endswith(".safetensors"):
        safetensors.torch.save_file(state, str(path))
    elif name == "wrapped.pt":  # a training checkpoint: {"state_dict": {"module.…"}}
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif name == "openai_jit.pt":
        _torchscript(open_clip_reference(config.clip_weights), path)
    else:
        torch.save(state, path)
    clip = build_clip_towers("tiny", path)
    frames = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clip.image_features(frames), reference.encode_image(frames), atol=1e-5, rtol=0)
        torch.testing.assert_close(clip.text_features(TEXTS[:1]),
                                   reference.encode_text(open_clip.tokenize(TEXTS[:1])), atol=1e-5, rtol=0)


def test_clip_weights_of_another_model_are_one_line_naming_the_file(tmp_path):
    import safetensors.torch

    other = {**TINY_CLIP_CONFIG, "vision_cfg": {**TINY_CLIP_CONFIG["vision_cfg"], "width": 48}}
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in open_clip.CLIP(**other).state_dict().items()},
                                str(path))
    with pytest.raises(CheckpointError) as error:
        build_clip_towers("tiny", path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message and "size mismatch" in message
    with pytest.raises(CheckpointError, match="not found"):
        build_clip_towers("tiny", tmp_path / "absent.bin")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"visual.proj": torch.zeros(1), "note": Fraction(1, 2)}, unsafe)
    with pytest.raises(UnsafeCheckpointError, match="unsafe.pt"):
        build_clip_towers("tiny", unsafe)
    with pytest.raises(OptionError, match="unknown open_clip model"):
        build_clip_towers("ViT-Nope", None)


def test_clap_audio_features_are_htsats_normed_mean_token_through_the_projection(tiny):
    config, _, clap = tiny
    state = clap_file(config)
    # CLAP's HTS-AT weights sit in avadapt's timm Swin (stage i's patch merging opens timm's stage i + 1)
    model = clap.audio.model
    torch.testing.assert_close(model.layers[1].downsample.reduction.weight,
                               state["module.audio_branch.layers.0.downsample.reduction.weight"], atol=0, rtol=0)
    torch.testing.assert_close(clap.audio.bn0.running_mean, state["module.audio_branch.bn0.running_mean"])
    torch.testing.assert_close(model.norm.weight, state["module.audio_branch.norm.weight"], atol=0, rtol=0)
    spectrograms = torch.randn(2, 1, 64, 1001) * 10 - 40
    with torch.no_grad():
        tokens = model.forward_features(clap.audio.spectrogram_image(spectrograms))  # (S, h, w, C) after norm
        latent = tokens.mean(dim=(1, 2))  # laion_clap's avgpool over every token
        hidden = F.relu(latent @ state["module.audio_projection.0.weight"].T + state["module.audio_projection.0.bias"])
        expected = hidden @ state["module.audio_projection.2.weight"].T + state["module.audio_projection.2.bias"]
        ours = clap.audio_features(spectrograms)
    assert ours.shape == (2, 32) == (2, clap.embed_dim)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert clap.logit_scale.ndim == 0 and clap.logit_scale == state["module.logit_scale_a"]
    assert clap.front_end == "clap"


def test_clap_text_features_are_robertas_pooler_output_through_the_projection(tiny):
    config, _, clap = tiny
    state = clap_file(config)
    roberta = transformers.RobertaModel(transformers.RobertaConfig(**TINY_ROBERTA)).eval()
    missing, unexpected = roberta.load_state_dict(
        {k.removeprefix("module.text_branch."): v for k, v in state.items() if k.startswith("module.text_branch.")},
        strict=False)
    assert not missing and set(unexpected) <= {"embeddings.position_ids"}
    # the byte-level vocabulary: <s>, each UTF-8 byte b as 4 + b, </s>, then <pad> (1) up to 77
    input_ids, attention_mask = clap.tokenize(["Té"])
    assert input_ids.shape == (1, 77)
    assert input_ids[0, :6].tolist() == [0, 4 + ord("T"), 4 + 0xC3, 4 + 0xA9, 2, 1]
    assert attention_mask[0].sum() == 5 and set(input_ids[0, 5:].tolist()) == {1}
    long_ids, _ = clap.tokenize(["x" * 200])
    assert long_ids.shape == (1, 77) and long_ids[0, -1] == 2  # truncated to 77 with its end token
    ids, mask = clap.tokenize(TEXTS)
    with torch.no_grad():
        pooled = roberta(input_ids=ids, attention_mask=mask).pooler_output
        hidden = F.relu(pooled @ state["module.text_projection.0.weight"].T + state["module.text_projection.0.bias"])
        expected = hidden @ state["module.text_projection.2.weight"].T + state["module.text_projection.2.bias"]
        torch.testing.assert_close(clap.text_features(TEXTS), expected, atol=1e-5, rtol=1e-5)


def test_tiny_checkpoints_round_trip_through_their_json_config(tiny, tmp_path):
    config, clip, clap = tiny
    again = TextEncodersConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    clip2, clap2 = build_text_encoders(again)
    frames, spectrograms = torch.randn(1, 3, 64, 64), torch.randn(1, 1, 64, 1001)
    with torch.no_grad():
        assert torch.equal(clip2.image_features(frames), clip.image_features(frames))
        assert torch.equal(clap2.audio_features(spectrograms), clap.audio_features(spectrograms))
        assert torch.equal(clap2.text_features(TEXTS), clap.text_features(TEXTS))
    other = write_tiny_text_checkpoints(tmp_path / "other", seed=4)
    other_clip, _ = build_text_encoders(other)
    assert not torch.equal(other_clip.visual_projection.weight, clip.visual_projection.weight)
    # frozen whatever .train() says
    for towers in (clip2, clap2):
        towers.train()
        assert not any(p.requires_grad for p in towers.parameters())
        assert not any(m.training for m in towers.modules())


def test_clap_weights_of_another_model_are_one_line_naming_the_file(tiny, tmp_path):
    config, _, _ = tiny
    checkpoint = torch.load(config.clap_weights, map_location="cpu", weights_only=True)

    def refused(change, match):
        state = dict(checkpoint["state_dict"])
        change(state)
        path = tmp_path / "changed.pt"
        torch.save({**checkpoint, "state_dict": state}, path)
        with pytest.raises(CheckpointError, match=match) as error:
            build_clap_towers("tiny", path, config.clap_tokenizer)
        assert str(path) in str(error.value) and "\n" not in str(error.value)

    refused(lambda s: s.update({"module.audio_projection.0.weight": torch.zeros(32, 96)}), "audio_projection")
    refused(lambda s: s.update({"module.audio_branch.norm.weight": torch.zeros(96)}), "HTS-AT")
    refused(lambda s: s.pop("module.text_branch.pooler.dense.weight"), "text_branch.pooler.dense.weight")
    refused(lambda s: s.update({"module.visual.proj": torch.zeros(1)}), "module.visual.proj|visual.proj")
    # a fusion-only key is dropped, but an HTS-AT key the encoder lacks is not
    refused(lambda s: s.update({"module.audio_branch.extra_head.weight": torch.zeros(1)}), "extra_head")


def test_tokenizer_folder_problems_are_one_line(tiny, tmp_path):
    config, _, _ = tiny
    absent = tmp_path / "no_tokenizer"
    with pytest.raises(CheckpointError) as error:
        build_clap_towers("tiny", config.clap_weights, absent)
    assert str(absent) in str(error.value) and "vocab.json" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(OptionError, match="clap_tokenizer"):
        build_clap_towers("tiny", config.clap_weights, None)


def test_config_is_checked_and_names_the_released_shapes():
    with pytest.raises(OptionError, match="unknown clap_model"):
        TextEncodersConfig(clap_model="PANN-14")
    with pytest.raises(TypeError, match="clip_path"):
        TextEncodersConfig.from_dict({"clip_path": "x"})
    assert TextEncodersConfig().clip_model == "ViT-B-32-quickgelu"
    # laion_clap's HTSAT-tiny: HTS-AT's AudioSet shape (768 wide at the end), RoBERTa-base, joint width 512
    released = CLAP_MODELS["HTSAT-tiny"]
    audioset = HTSAT_PRESETS[released.htsat_preset]
    assert (audioset.embed_dim * 2 ** (len(audioset.depths) - 1), audioset.depths, audioset.num_heads) == (
        768, (2, 2, 6, 2), (4, 8, 16, 32))
    assert (released.roberta["vocab_size"], released.roberta["hidden_size"], released.embed_dim) == (50265, 768, 512)


def test_a_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'avadapt\[text\]'"):
        build_clip_towers("tiny", None)


def test_clap_front_end_is_clap_audio_cfg_of_each_second_tiled_to_ten():
    librosa = pytest.importorskip("librosa")
    front_end = audio_front_end("clap")
    fbank = front_end.fbank
    assert front_end.encoder == "htsat"
    # a 1024-sample window at 48 kHz, exactly, also after a JSON round trip
    assert (fbank.sample_rate, fbank.frame_samples, fbank.fft_size, fbank.shift_samples) == (48000, 1024, 1024, 480)
    assert FbankConfig.from_dict(json.loads(json.dumps(fbank.to_dict()))).frame_samples == 1024
    assert front_end.embedding_options() == {"num_mel_bins": 64, "num_frames": 1001}
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 48000
    second = (0.3 * np.sin(2 * np.pi * 523 * t) + 0.05 * rng.standard_normal(48000)).astype(np.float32)
    images = segment_fbank(second, fbank, num_segments=1)
    assert images.shape == (1, 1, 64, 1001)
    mel = librosa.feature.melspectrogram(y=np.tile(second, 10).astype(np.float64), sr=48000, n_fft=1024,
                                         hop_length=480, win_length=1024, window="hann", center=True,
                                         pad_mode="reflect", power=2.0, n_mels=64, fmin=50, fmax=14000, htk=False,
                                         norm="slaney")
    expected = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)  # (64, 1001)
    np.testing.assert_allclose(images[0, 0].numpy(), expected, rtol=0, atol=5e-5)


@pytest.mark.slow
def test_released_shapes_build_clip_b32_as_timms_clip_vit_and_clap_as_htsat_and_roberta_base(tiny, tmp_path):
    """DG-SCT's encoders at full size, random weights written as open_clip writes them (about 600 MB)."""
    import safetensors.torch

    reference = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    path = tmp_path / "open_clip_model.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    clip = build_clip_towers("ViT-B-32-quickgelu", path)
    assert clip.visual.model.default_cfg["architecture"] == "vit_base_patch32_clip_quickgelu_224"
    assert (clip.embed_dim, clip.image_size, len(clip.visual.blocks), clip.visual.blocks[0].num_heads) == (
        512, 224, 12, 12)
    frames = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(clip.image_features(frames), reference.encode_image(frames), atol=1e-5, rtol=0)
        torch.testing.assert_close(clip.text_features(TEXTS), reference.encode_text(open_clip.tokenize(TEXTS)),
                                   atol=1e-5, rtol=0)
    clap = build_clap_towers("HTSAT-tiny", None, tiny[0].clap_tokenizer)
    assert (clap.audio.embed_dim, clap.embed_dim, clap.text_branch.config.hidden_size) == (768, 512, 768)
    with torch.no_grad():
        assert clap.audio_features(torch.randn(1, 1, 64, 1001)).shape == (1, 512)
