"""Audio front ends: the model's audio embedding and the data's fbank come from one named entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from avadapt._registry import METHODS, TASKS
from avadapt.audio_front_ends import AUDIO_FRONT_ENDS, FbankConfig, audio_front_end, recorded_audio_front_end
from avadapt.data.datamodule import AVDataModule
from avadapt.errors import OptionError
from avadapt.models import build_without_weights, create_model, paper_audio_front_end
from avadapt.param_table import SWINV2_L
from avadapt.training import AVAdaptModule

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ave"
pytestmark = pytest.mark.usefixtures("one_thread")


def test_model_and_data_module_of_a_config_read_the_same_named_front_end():
    model_options = yaml.safe_load((CONFIGS / "tiny_cpu.yaml").read_text())["model"]
    assert model_options["audio_front_end"] == "vit"
    module = AVAdaptModule(**model_options)
    data = AVDataModule("unused_root", preprocessing=module.preprocessing)  # as the CLI links them

    audio, fbank = module.model.backbone.audio, data.fbank
    assert (audio.num_mel_bins, audio.num_frames) == (fbank.num_mel_bins, fbank.target_frames) == (64, 48)
    assert fbank == audio_front_end("vit", {"num_mel_bins": 64, "target_frames": 48}).fbank
    # everything the config does not change is the vit entry's: the CLIP/ViT loaders' settings
    assert (fbank.frame_shift_ms, fbank.window_seconds, fbank.mean, fbank.std) == (10.0, 1.0, -4.1426, 3.2001)
    assert (audio.kernel_reduction, audio.pos_embed) == ("sum", "crop")
    assert module.preprocessing["audio_front_end"] == "vit"


def test_paper_configs_build_the_vit_front_end_on_both_sides():
    model_options = yaml.safe_load((CONFIGS / "clip_vit_b16_tiny.yaml").read_text())["model"]
    name = model_options["audio_front_end"]
    model = build_without_weights(backbone=model_options["backbone"], method=model_options["method"],
                                  task=model_options["task"], audio_front_end=name,
                                  **model_options["method_options"])
    fbank = recorded_audio_front_end({"audio_front_end": name}).fbank  # what the data module and predict read
    assert (model.backbone.audio.num_mel_bins, model.backbone.audio.num_frames) == (128, 102)
    assert (fbank.num_mel_bins, fbank.target_frames) == (128, 102)
    assert model.backbone.audio_grid == (8, 6)  # 16-pixel patches over 128 × 102


def test_a_swin_front_end_sizes_the_embedding_and_the_fbank_alike():
    model = build_without_weights(backbone=SWINV2_L, method="lavish", task="ave",
                                  audio_front_end="lavish_swin_ave")
    fbank = recorded_audio_front_end({"audio_front_end": "lavish_swin_ave"}).fbank
    assert (model.backbone.audio.num_mel_bins, model.backbone.audio.num_frames) == (192, 192)
    assert (fbank.num_mel_bins, fbank.target_frames, fbank.frame_shift_ms) == (192, 192, 5.2)
    assert (fbank.mean, fbank.std) == (-4.9848, 3.7080)


# The front end each built-in (method, family) trains each built-in task with, unless told: (AVE, AVS, AVQA).
STG_CMA_SWIN = ("stg_cma_swin_ave", "stg_cma_swin_avs", "stg_cma_swin_avqa")
PAPER_FRONT_ENDS = {
    ("stg_cma", "vit"): ("vit", "vit", "vit"),
    ("lavish", "vit"): ("vit", "vit", "vit"),
    ("av_stfp", "vit"): ("vit", "vit", "vit"),
    ("probe", "vit"): ("vit", "vit", "vit"),
    # DG-SCT hears through HTS-AT whatever it sees with, each second tiled to 10 s (AVS: the 5 s clip)
    ("dg_sct", "vit"): ("htsat", "htsat_avs", "htsat"),
    ("stg_cma", "swin"): STG_CMA_SWIN,
    ("probe", "swin"): STG_CMA_SWIN,  # the probe is STG-CMA's comparison: the same loader
    ("lavish", "swin"): ("lavish_swin_ave", "lavish_swin_avs", "lavish_swin_avqa"),
    ("dg_sct", "swin"): ("htsat", "htsat_avs", "htsat"),
    ("av_stfp", "swin"): ("stg_cma_swin_ave",) * 3,  # no paper setting: the Swin family's default
}


def test_every_built_in_method_family_and_task_resolves_to_its_papers_front_end():
    assert {method for method, _ in PAPER_FRONT_ENDS} == set(METHODS.names())
    for (method, family), names in PAPER_FRONT_ENDS.items():
        for task, name in zip(("ave", "avs", "avqa"), names, strict=True):
            assert paper_audio_front_end(method, family, task) == name, (method, family, task)
    # "clap" is read by avadapt.text's CLAP audio tower, not chosen per method and task
    assert {name for names in PAPER_FRONT_ENDS.values() for name in names} == set(AUDIO_FRONT_ENDS) - {"clap"}
    with pytest.raises(OptionError, match="unknown task 'no_such_task'"):
        paper_audio_front_end("lavish", "swin", "no_such_task")
    with pytest.raises(OptionError, match="no default audio front end for a 'mamba' backbone"):
        paper_audio_front_end("lavish", "mamba", "ave")


def test_a_task_without_front_ends_gets_the_methods_own_else_the_familys(monkeypatch):
    monkeypatch.setattr(type(TASKS.get("avs")), "paper_audio_front_ends", {})
    assert [paper_audio_front_end(method, "swin", "avs") for method in ("stg_cma", "lavish", "dg_sct")] == [
        "stg_cma_swin_ave", "stg_cma_swin_ave", "htsat"]
    assert paper_audio_front_end("lavish", "vit", "avs") == "vit"


def test_the_default_front_end_is_the_papers_for_the_backbone_family():
    module = AVAdaptModule(backbone="test_vit", task="ave", backbone_options={"img_size": 32},
                           fbank={"num_mel_bins": 32, "target_frames": 48}, task_options={"num_classes": 3})
    assert module.front_end.name == "vit" and module.hparams["audio_front_end"] == "vit"
    assert module.model.backbone.audio.num_mel_bins == 32


def test_unknown_front_end_name_fails_with_the_known_names():
    message = r"unknown audio front end 'wav2vec'; known: .*lavish_swin_ave.*vit"
    with pytest.raises(KeyError, match=message):
        audio_front_end("wav2vec")
    with pytest.raises(KeyError, match=message):
        AVAdaptModule(backbone="test_vit", task="ave", backbone_options={"img_size": 32},
                      audio_front_end="wav2vec")
    with pytest.raises(KeyError, match=message):
        create_model(backbone="test_vit", method="probe", task="ave", audio_front_end="wav2vec")
    with pytest.raises(KeyError, match=message):
        _ = AVDataModule("unused_root", preprocessing={"audio_front_end": "wav2vec"}).fbank
    with pytest.raises(TypeError, match="num_mel_bin"):  # a misspelt fbank field is named too
        audio_front_end("vit", {"num_mel_bin": 64})


def test_the_backbone_audio_option_may_change_the_kernel_but_not_the_size():
    options = {"backbone": "test_vit", "task": "ave", "task_options": {"num_classes": 3},
               "audio_front_end": "vit", "fbank": {"num_mel_bins": 32, "target_frames": 48}}
    module = AVAdaptModule(**options, backbone_options={"img_size": 32, "audio": {"kernel_reduction": "mean"}})
    assert module.model.backbone.audio.kernel_reduction == "mean"
    assert module.model.backbone.audio.num_mel_bins == 32
    with pytest.raises(ValueError, match=r"num_mel_bins=64 disagrees with the 'vit' audio front end's "
                                         r"fbank.num_mel_bins=32; set it in the fbank only"):
        AVAdaptModule(**options, backbone_options={"img_size": 32, "audio": {"num_mel_bins": 64}})


def test_records_without_a_front_end_name_mean_the_vit_entry():
    """Adapter directories that predate the names hold the full fbank only; data and predict read them alike."""
    full = FbankConfig(num_mel_bins=32, target_frames=48).to_dict()
    assert recorded_audio_front_end({"fbank": full}).fbank == FbankConfig(num_mel_bins=32, target_frames=48)
    assert recorded_audio_front_end(None).fbank == FbankConfig()
    assert AVDataModule("unused_root").fbank == FbankConfig()


def test_a_data_module_reads_the_dataset_it_is_told_or_the_models_task_reads():
    assert AVDataModule("unused_root", preprocessing={"dataset": "avs_s4"}).dataset_name == "avs_s4"
    told = AVDataModule("unused_root", dataset="ave", preprocessing={"dataset": "avs_s4"})
    assert told.dataset_name == "ave"
    with pytest.raises(OptionError, match="needs a dataset"):
        _ = AVDataModule("unused_root").dataset_name
