"""Adapter-only checkpoints: what is written, strict loading, and refusal of unsafe or foreign files."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import avadapt
from avadapt.adapter_files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterMismatchError,
    BackboneFileError,
    BackboneMismatchWarning,
    RandomBackboneWarning,
    load_adapter,
    save_adapter,
    trainable_state_keys,
)
from avadapt.errors import CheckpointError, OptionError
from tests.conftest import TINY_AUDIO, TINY_FRAMES, TINY_IMAGE

BACKBONE_PREFIX = "method.backbone."
pytestmark = pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning")


def _trained_model(method: str = "stg_cma", seed: int = 0, **options) -> avadapt.AVModel:
    """A tiny model whose trainable parameters are all non-zero (as after training)."""
    torch.manual_seed(seed)
    model = avadapt.create_model(backbone="test_vit", method=method, task="ave", num_frames=TINY_FRAMES,
                                 num_classes=5, backbone_options={"img_size": TINY_IMAGE, "audio": TINY_AUDIO},
                                 **options)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_(0, 0.05)
    return model.eval()


def _inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, TINY_FRAMES, 3, TINY_IMAGE, TINY_IMAGE, generator=g),
            torch.randn(2, TINY_FRAMES, 1, TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames, generator=g))


def _save_backbone(model: avadapt.AVModel, path) -> str:
    save_file({k: v.contiguous() for k, v in model.backbone.model.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.parametrize("method", ["stg_cma", "probe"])
def test_round_trip_gives_bit_identical_predictions(tmp_path, method):
    model = _trained_model(method)
    weights = _save_backbone(model, tmp_path / "backbone.safetensors")
    video, audio = _inputs()
    with torch.no_grad():
        before = model(video, audio)
    names = [f"class {k}" for k in range(4)] + ["background"]
    save_adapter(model, tmp_path / "adapter", class_names=names, preprocessing={"fbank": {"num_mel_bins": 32}})
    loaded = load_adapter(tmp_path / "adapter", weights=weights)
    with torch.no_grad():
        after = loaded(video, audio)
    assert torch.equal(before, after)
    assert loaded.adapter_config["class_names"] == names
    assert loaded.spec == model.spec
    assert not loaded.training


def test_adapter_file_holds_only_trainable_state_and_is_small(tmp_path):
    model = _trained_model()
    save_adapter(model, tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    assert not [k for k in tensors if k.startswith(BACKBONE_PREFIX)]
    assert set(tensors) == {n for n, p in model.named_parameters() if p.requires_grad}
    trainable_bytes = sum(p.numel() * 4 for p in model.trainable_parameters())
    total_bytes = sum(p.numel() * 4 for p in model.parameters())
    size = (tmp_path / WEIGHTS_NAME).stat().st_size
    assert size < trainable_bytes + 64 * 1024 < total_bytes
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["spec"]["backbone"] == "test_vit"
    assert config["spec"]["audio_embedding"]["num_mel_bins"] == TINY_AUDIO.num_mel_bins
    assert config["spec"]["backbone_options"]["img_size"] == TINY_IMAGE


def test_buffers_of_trained_modules_are_kept_and_frozen_ones_are_not():
    model = _trained_model()
    model.head.register_buffer("running_mean", torch.zeros(3))
    model.backbone.model.register_buffer("frozen_table", torch.zeros(3))
    keys = trainable_state_keys(model)
    assert "head.running_mean" in keys
    assert f"{BACKBONE_PREFIX}model.frozen_table" not in keys


def test_unexpected_key_fails_clearly(tmp_path):
    model = _trained_model()
    save_adapter(model, tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    tensors["method.blocks.0.extra_adapter.weight"] = torch.zeros(2)
    save_file(tensors, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(AdapterMismatchError, match=r"unexpected keys: method\.blocks\.0\.extra_adapter\.weight"):
        load_adapter(tmp_path, weights=_save_backbone(model, tmp_path / "b.safetensors"))


def test_missing_key_fails_clearly(tmp_path):
    model = _trained_model()
    save_adapter(model, tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    del tensors["head.classifier.2.bias"]
    save_file(tensors, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(AdapterMismatchError, match=r"missing keys: head\.classifier\.2\.bias"):
        load_adapter(tmp_path, weights=_save_backbone(model, tmp_path / "b.safetensors"))


def test_adapter_of_another_preset_is_refused(tmp_path):
    save_adapter(_trained_model(preset="tiny"), tmp_path / "tiny")
    config = json.loads((tmp_path / "tiny" / CONFIG_NAME).read_text())
    config["spec"]["method_config"]["preset"] = "base"  # config says base, weights are tiny
    (tmp_path / "tiny" / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(AdapterMismatchError, match="wrong shapes"):
        load_adapter(tmp_path / "tiny", pretrained=False)


def test_backbone_keys_in_an_adapter_file_are_unexpected(tmp_path):
    model = _trained_model()
    save_adapter(model, tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_NAME))
    tensors[f"{BACKBONE_PREFIX}model.cls_token"] = model.backbone.model.cls_token.detach().clone()
    save_file(tensors, str(tmp_path / WEIGHTS_NAME))
    with pytest.raises(AdapterMismatchError, match="cls_token"):
        load_adapter(tmp_path, pretrained=False)


def test_without_backbone_weights_the_random_backbone_is_announced(tmp_path):
    save_adapter(_trained_model(), tmp_path)
    with pytest.warns(RandomBackboneWarning, match="RANDOMLY INITIALISED"):
        load_adapter(tmp_path)


def test_recorded_backbone_file_is_found_again(tmp_path):
    model = _trained_model()
    weights = _save_backbone(model, tmp_path / "backbone.safetensors")
    save_adapter(model, tmp_path / "adapter", backbone_source={"pretrained": False, "weights": weights})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomBackboneWarning)
        loaded = load_adapter(tmp_path / "adapter")
    assert torch.equal(loaded.backbone.model.cls_token, model.backbone.model.cls_token)


def _other_backbone(model: avadapt.AVModel, path) -> str:
    """A backbone file of the same shapes as ``model``'s with other values."""
    state = {k: v + 1 for k, v in model.backbone.model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return str(path)


@pytest.fixture
def recorded(tmp_path, monkeypatch) -> tuple[avadapt.AVModel, Path, Path]:
    """A model built on a backbone file, saved from ``tmp_path/train`` with the file named relative to it; the
    test then runs in ``tmp_path/elsewhere``. Returns the model, the backbone file and the adapter directory."""
    (tmp_path / "train").mkdir()
    (tmp_path / "elsewhere").mkdir()
    model = _trained_model()
    weights = Path(_save_backbone(model, tmp_path / "train" / "backbone.safetensors"))
    monkeypatch.chdir(tmp_path / "train")
    model = _trained_model(weights="backbone.safetensors")  # create_model records where its backbone came from
    adapter = save_adapter(model, tmp_path / "adapter")
    monkeypatch.chdir(tmp_path / "elsewhere")
    return model, weights, adapter


def _loads_on(adapter: Path, backbone_file: Path, **options) -> avadapt.AVModel:
    """Load ``adapter`` with no random-backbone warning and check it sits on ``backbone_file``'s weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomBackboneWarning)
        loaded = load_adapter(adapter, **options)
    assert torch.equal(loaded.backbone.model.cls_token, load_file(str(backbone_file))["cls_token"])
    return loaded


def test_adapter_records_the_backbone_file_by_absolute_path_and_hash_and_finds_it_from_elsewhere(recorded):
    model, weights, adapter = recorded
    source = json.loads((adapter / CONFIG_NAME).read_text())["backbone_source"]
    assert source == {"pretrained": False, "weights": str(weights.resolve()),
                      "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    video, audio = _inputs()
    with torch.no_grad():
        assert torch.equal(_loads_on(adapter, weights)(video, audio), model(video, audio))


def test_moved_backbone_file_is_refused_until_its_new_place_is_given(recorded, tmp_path):
    _, weights, adapter = recorded
    moved = Path(shutil.move(weights, tmp_path / "moved.safetensors"))
    with pytest.raises(BackboneFileError, match=rf"^{weights.resolve()}: backbone weights file recorded by the "
                                                rf"adapter {adapter} not found \(moved or deleted\); give its new "
                                                "place with --weights PATH"):
        load_adapter(adapter)
    _loads_on(adapter, moved, weights=moved)  # the same bytes elsewhere: accepted


def test_missing_backbone_file_is_refused_even_when_a_mismatch_is_allowed(recorded):
    _, weights, adapter = recorded
    weights.unlink()
    with pytest.raises(BackboneFileError, match="not found"):
        load_adapter(adapter, weights_mismatch="ok")


def test_replaced_backbone_file_is_refused_unless_a_mismatch_is_allowed(recorded):
    model, weights, adapter = recorded
    replacement = hashlib.sha256(Path(_other_backbone(model, weights)).read_bytes()).hexdigest()
    with pytest.raises(BackboneFileError, match=rf"^{weights.resolve()}: has changed since it was the backbone "
                                                rf"weights {adapter} was trained with \(sha256 {replacement[:16]}"):
        load_adapter(adapter)
    with pytest.warns(BackboneMismatchWarning, match="used as asked"):
        _loads_on(adapter, weights, weights_mismatch="ok")


def test_a_given_file_is_accepted_only_with_the_recorded_bytes(recorded, tmp_path):
    model, weights, adapter = recorded
    copy = Path(shutil.copy(weights, tmp_path / "copy.safetensors"))
    _loads_on(adapter, copy, weights=copy)
    other = Path(_other_backbone(model, tmp_path / "other.safetensors"))
    with pytest.raises(BackboneFileError, match=rf"^{other}: is another file than the backbone weights {adapter} "
                                                rf"was trained with \({weights.resolve()}\)"):
        load_adapter(adapter, weights=other)
    with pytest.warns(BackboneMismatchWarning):
        _loads_on(adapter, other, weights=other, weights_mismatch="ok")
    with pytest.raises(BackboneFileError, match=rf"^{tmp_path / 'nowhere'}: backbone weights file not found"):
        load_adapter(adapter, weights=tmp_path / "nowhere")


def test_an_unknown_mismatch_policy_is_an_option_error(recorded):
    with pytest.raises(OptionError, match="weights_mismatch must be one of refuse, ok, got 'maybe'"):
        load_adapter(recorded[2], weights_mismatch="maybe")


def test_an_adapter_written_without_hashes_loads_as_before(recorded, tmp_path):
    model, weights, adapter = recorded
    config = json.loads((adapter / CONFIG_NAME).read_text())
    del config["backbone_source"]["weights_sha256"]
    (adapter / CONFIG_NAME).write_text(json.dumps(config))
    _loads_on(adapter, weights)  # the recorded file while it exists
    other = Path(_other_backbone(model, tmp_path / "other.safetensors"))
    _loads_on(adapter, other, weights=other)  # any file given: nothing to compare it with
    weights.unlink()
    with pytest.warns(RandomBackboneWarning, match="RANDOMLY INITIALISED"):  # a recorded file that is gone
        load_adapter(adapter)


def test_a_model_of_ones_own_loop_saves_what_prediction_needs(tmp_path):
    model = _trained_model()
    save_adapter(model, tmp_path)
    preprocessing = json.loads((tmp_path / CONFIG_NAME).read_text())["preprocessing"]
    assert preprocessing["video"]["input_size"] == [3, TINY_IMAGE, TINY_IMAGE]
    assert preprocessing["audio_front_end"] == "vit"  # the ViT family's front end
    assert (preprocessing["fbank"]["num_mel_bins"], preprocessing["fbank"]["target_frames"]) == (
        TINY_AUDIO.num_mel_bins, TINY_AUDIO.num_frames)  # the tiny audio embedding's size, not the front end's
    assert preprocessing["fbank"]["mean"] == -4.1426 and preprocessing["num_segments"] == TINY_FRAMES
    assert preprocessing["dataset"] == "ave"


def test_an_adapter_without_preprocessing_gets_the_models_default_with_a_warning(tmp_path):
    save_adapter(_trained_model(), tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    expected, config["preprocessing"] = config["preprocessing"], None
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.warns(UserWarning, match="records no preprocessing"):
        loaded = load_adapter(tmp_path)
    assert json.loads(json.dumps(loaded.adapter_config["preprocessing"])) == expected


class _Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_a_pickle_posing_as_adapter_weights_is_not_unpickled(tmp_path):
    save_adapter(_trained_model(), tmp_path)
    with open(tmp_path / WEIGHTS_NAME, "wb") as f:
        pickle.dump({"head.classifier.0.weight": _Payload()}, f)
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_NAME}: not a readable safetensors file"):
        load_adapter(tmp_path, pretrained=False)


def test_not_an_adapter_directory(tmp_path):
    with pytest.raises(CheckpointError, match="config.json: not found"):
        load_adapter(tmp_path)
