"""The text model (DG-SCT between CLIP's image tower and CLAP's audio tower, class names as classifiers) against
the frozen towers computed on their own, the reference's logit mixing and loss weights by hand, and the
adapter-only file round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("open_clip")
pytest.importorskip("transformers")

from avadapt.text.encoders import build_text_encoders, write_tiny_text_checkpoints
from avadapt.text.losses import contrastive_losses, dynamic_weights, matching_loss, weighted_total
from avadapt.text.model import AVTextConfig, AVTextModel, mix_logits
from avadapt.text.training import (
    TextModule,
    load_text_adapter,
    save_text_adapter,
)

NAMES = ["dog barking", "Frying_(food)", "violin"]
SMALL_AUDIO = {"num_mel_bins": 16, "num_frames": 251}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return write_tiny_text_checkpoints(tmp_path_factory.mktemp("encoders"), seed=0, clap_audio=SMALL_AUDIO).to_dict()


@pytest.fixture(scope="module")
def towers(encoders):
    from avadapt.text.encoders import TextEncodersConfig

    return build_text_encoders(TextEncodersConfig.from_dict(encoders))


def _inputs(clip, clap, batch=2, frames=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = clip.image_size
    audio = clap.audio.config
    video = torch.randn(batch, frames, 3, size, size, generator=generator)
    spectrogram = torch.randn(batch, frames, 1, audio.num_mel_bins, audio.num_frames, generator=generator) * 3
    return video, spectrogram


def test_untrained_model_sees_what_the_frozen_towers_see(towers):
    """DG-SCT's gates start at 0: the adapted encoders give the towers' own CLIP and CLAP embeddings."""
    clip, clap = towers
    model = AVTextModel(clip, clap, NAMES, AVTextConfig(num_frames=3)).eval()
    video, audio = _inputs(clip, clap)
    with torch.no_grad():
        image, sound = model.encode(video, audio)
        expected_image = clip.image_features(video.flatten(0, 1)).view(2, 3, -1)
        expected_sound = clap.audio_features(audio.flatten(0, 1)).view(2, 3, -1)
    torch.testing.assert_close(image, expected_image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sound, expected_sound, atol=1e-5, rtol=1e-5)


def test_frozen_logits_are_clip_and_clap_zero_shot(towers):
    """With the context words as the prompt and no CLIP-Adapter, the visual logits are CLIP's zero-shot logits
    ("a photo of a {name}.") and the audio logits CLAP's ("The sounds of {name}") times the stored log scale."""
    clip, clap = towers
    config = AVTextConfig(num_frames=3, adapter_mix=0.0, random_context=False)
    model = AVTextModel(clip, clap, NAMES, config).eval()
    video, audio = _inputs(clip, clap, seed=1)
    with torch.no_grad():
        out = model(video, audio)
        image = F.normalize(clip.image_features(video.flatten(0, 1)), dim=-1)
        words = F.normalize(clip.text_features([f"a photo of a {n.replace('_', ' ')}." for n in NAMES]), dim=-1)
        sound = F.normalize(clap.audio_features(audio.flatten(0, 1)), dim=-1)
        heard = F.normalize(clap.text_features([f"The sounds of {n}" for n in NAMES]), dim=-1)
    torch.testing.assert_close(out.visual.flatten(0, 1), clip.logit_scale.exp() * image @ words.t(),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.audio.flatten(0, 1), clap.logit_scale * sound @ heard.t(), atol=1e-4, rtol=1e-4)
    assert out.logits.shape == (2, 3, len(NAMES))


def test_new_class_names_change_the_classifier_not_the_trained_state(towers):
    clip, clap = towers
    model = AVTextModel(clip, clap, NAMES, AVTextConfig(num_frames=3)).eval()
    before = {k: v.clone() for k, v in model.prompts.state_dict().items()}
    model.set_classes(["cat", "car"])
    video, audio = _inputs(clip, clap)
    with torch.no_grad():
        assert model(video, audio).logits.shape == (2, 3, 2)
    assert before.keys() == model.prompts.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in model.prompts.state_dict().items())


def test_ratio_mixing_is_the_references_event_scores():
    visual = torch.tensor([[2.0, -1.0, 0.5]])
    audio = torch.tensor([[1.0, 3.0, 0.5]])
    by_hand = torch.tensor([[(2 / 3) * 2 + (1 / 3) * 1, (-1 / 2) * -1 + (3 / 2) * 3, 0.5 * 0.5 + 0.5 * 0.5]])
    torch.testing.assert_close(mix_logits(visual, audio, "ratio"), by_hand)
    assert torch.isfinite(mix_logits(torch.tensor([1.0]), torch.tensor([-1.0]), "ratio")).all()
    torch.testing.assert_close(mix_logits(visual, audio, "sum"), visual + audio)


def test_dynamic_weights_follow_the_reference_formula():
    losses = [torch.tensor(2.0), torch.tensor(1.0), torch.tensor(0.5)]
    weights = dynamic_weights(losses, epoch=3)
    total = 3 + 3.5
    assert [float(w) for w in weights] == pytest.approx([2 / total + 1 / 3, 1 / total + 1 / 3, 0.5 / total + 1 / 3])
    assert float(weighted_total(losses, 3)) == pytest.approx(sum(float(w * x) for w, x in zip(weights, losses)))
    with pytest.raises(ValueError):
        dynamic_weights(losses, epoch=0)


def test_losses_reward_the_right_answer():
    aligned = torch.eye(4) * 30
    a2i, i2a = contrastive_losses(aligned)
    assert float(a2i) < 1e-6 and float(i2a) < 1e-6
    assert float(contrastive_losses(aligned.flip(0))[0]) > 10
    logits = torch.zeros(2, 3, 4)
    logits[0, :, 1] = logits[1, :, 2] = 20
    assert float(matching_loss(logits, torch.tensor([1, 2]), "clip")) < 1e-6
    assert float(matching_loss(logits, torch.tensor([[1, 1, 1], [2, 2, 2]]), "segment")) < 1e-6
    multi = torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0]])
    assert float(matching_loss(logits - 10, multi, "multilabel")) < 1e-3


def test_adapter_file_round_trip_and_its_size(encoders, tmp_path, towers):
    module = TextModule(encoders, NAMES, {"num_frames": 3})
    with torch.no_grad():
        for p in module.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)  # gates open, prompts moved: a state worth keeping
    folder = save_text_adapter(module, tmp_path / "adapter")
    weights = (folder / "text_adapter.safetensors").stat().st_size
    towers_size = sum(p.numel() for p in module.model.clip.parameters()) + \
        sum(p.numel() for p in module.model.clap.parameters())
    assert weights < towers_size * 4 / 2  # the towers are never written
    loaded = load_text_adapter(folder)
    clip, clap = towers
    video, audio = _inputs(clip, clap, seed=3)
    module.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(video, audio).logits, module.model(video, audio).logits)


def test_adapter_folder_without_files_is_one_clear_error(tmp_path):
    from avadapt.errors import CheckpointError

    with pytest.raises(CheckpointError, match="text_adapter.json: not found"):
        load_text_adapter(tmp_path)
