"""The ``avadapt`` command: LightningCLI fit/validate/test from YAML, predict, params, config files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avadapt.cli import main
from avadapt.data.media import write_mp4
from tests.conftest import TINY_CONFIG, tiny_fit_args

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),  # pytest's own argv is in sys.argv
]


def test_fit_fast_dev_run_from_the_tiny_config(tmp_path, ave_root, capsys):
    main(tiny_fit_args(ave_root, tmp_path, "--trainer.fast_dev_run", "1",
                   "--adapter_export.dirpath", str(tmp_path / "adapter")))
    assert (tmp_path / "adapter" / "config.json").is_file()
    assert (tmp_path / "adapter" / "adapter.safetensors").is_file()
    assert "test/accuracy" in capsys.readouterr().out  # the test split ran once after fit


def test_fit_then_validate_test_and_predict_from_the_checkpoints(tmp_path, ave_root, capsys):
    main(tiny_fit_args(ave_root, tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                   "--test_after_fit", "false"))
    run = tmp_path / "lightning_logs" / "version_0"  # the default logger's folder: a CSVLogger's
    checkpoints = sorted((run / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt"} and len(checkpoints) == 2  # best on val + last
    assert (run / "metrics.csv").is_file()
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn beside the checkpoints
    best = next(p for p in checkpoints if p.name.startswith("epoch00-val_acc"))
    capsys.readouterr()
    for subcommand in ("validate", "test"):
        main([subcommand, "--config", str(TINY_CONFIG), "--data.root", str(ave_root), "--data.num_workers", "0",
              "--trainer.default_root_dir", str(tmp_path / subcommand), "--trainer.logger", "false",
              "--trainer.precision", "32-true", "--ckpt_path", str(best)])
    printed = capsys.readouterr().out
    assert "val/accuracy" in printed and "test/accuracy" in printed

    annotations = (ave_root / "testSet.txt").read_text().splitlines()
    category, video_id, *_ = annotations[0].split("&")
    main(["predict", str(ave_root / "AVE" / f"{video_id}.mp4"), "--adapter", str(run / "adapter"),
          "--out", str(tmp_path / "pred" / video_id), "--labels", str(ave_root / "Annotations.txt")])
    result = json.loads((tmp_path / "pred" / f"{video_id}.json").read_text())
    assert result["seconds"] == 10 and len(result["segments"]) == 10
    assert {s["ground_truth"] for s in result["segments"]} <= {category, "background"}
    assert (tmp_path / "pred" / f"{video_id}.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_slides_windows_over_a_long_video(tmp_path, ave_root):
    main(tiny_fit_args(ave_root, tmp_path, "--trainer.fast_dev_run", "1", "--test_after_fit", "false",
                   "--adapter_export.dirpath", str(tmp_path / "adapter")))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(23 * 4, 32, 32, 3), dtype=np.uint8)
    video = write_mp4(tmp_path / "long.mp4", frames, fps=4, audio=rng.normal(0, 0.1, 23 * 16000).astype(np.float32))
    main(["predict", str(video), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "long")])
    result = json.loads((tmp_path / "long.json").read_text())
    assert result["seconds"] == 23
    assert result["window_starts"] == [0, 10, 13]  # the last window is shifted back to end with the file
    assert [s["second"] for s in result["segments"]] == list(range(23))
    assert all(0 < s["score"] <= 1 for s in result["segments"])


def test_every_shipped_config_parses(capsys):
    configs = sorted(REPO.glob("configs/*/*.yaml"))
    assert {config.parent.name for config in configs} >= {"ave"}
    for config in configs:
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(config), "--data.root", "DATA_ROOT", "--print_config"])
        assert exit_info.value.code in (0, None), config
        printed = capsys.readouterr().out
        # checkpoints are selected on the task's own metric unless a config names another
        assert "DATA_ROOT" in printed and "monitor: task" in printed, config


def test_paper_configs_carry_the_recipe(capsys):
    main_args = ["fit", "--config", str(REPO / "configs/ave/clip_vit_l14_base.yaml"), "--data.root", "x",
                 "--print_config"]
    with pytest.raises(SystemExit):
        main(main_args)
    printed = capsys.readouterr().out
    for line in ("lr: 5.0e-05", "min_lr: 2.0e-06", "head_lr_factor: 0.1", "warmup_epochs: 2", "max_epochs: 20",
                 "batch_size: 2", "precision: bf16-mixed", "vit_large_patch14_clip_quickgelu_224.openai"):
        assert line in printed, line


def test_params_subcommand_counts_the_parameters_of_the_model_it_names(capsys):
    import avadapt

    main(["params", "--backbone", "test_vit", "--preset", "tiny", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (report["method"], report["backbone"], report["task"]) == ("stg_cma", "test_vit", "ave")
    model = avadapt.create_model(backbone="test_vit", method="stg_cma", task="ave", preset="tiny")
    assert report["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report["total"] == sum(p.numel() for p in model.parameters())
    assert report["trainable"] < report["total"]


def test_unknown_option_is_an_error():
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY_CONFIG), "--data.root", "x", "--model.no_such_option", "1"])


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_precision_defaults_to_what_the_cpu_supports(native_bf16, expected, monkeypatch, capsys):
    """bf16 autocast where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), fp32 where it would emulate it
    (AVX2-only CPUs such as AMD Zen 3)."""
    from avadapt.training import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: native_bf16)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY_CONFIG), "--data.root", "x", "--print_config"])
    assert f"precision: {expected}" in capsys.readouterr().out


def test_native_bf16_means_avx512_bf16_or_amx(monkeypatch):
    from avadapt.training.precision import cpu_supports_bf16

    for avx512_bf16, amx in [(False, False), (True, False), (False, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert cpu_supports_bf16() == (avx512_bf16 or amx)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path, ave_root):
    """``--trainer.strategy ddp --trainer.devices 2``: fit, export and the final test run on two ranks."""
    import subprocess
    import sys

    args = tiny_fit_args(ave_root, tmp_path, "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                     "--trainer.strategy", "ddp", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2")
    done = subprocess.run([sys.executable, "-m", "avadapt.cli", *args], capture_output=True, text=True, timeout=540,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test/accuracy" in done.stdout
    assert list(tmp_path.glob("lightning_logs/version_0/adapter/adapter.safetensors"))


def test_lavish_config_trains_as_the_reference_does():
    import yaml

    from avadapt.models import build_without_weights, parameter_report

    config = yaml.safe_load((REPO / "configs/ave/lavish_swinv2_l.yaml").read_text())["model"]
    model = build_without_weights(backbone=config["backbone"], method="lavish", task="ave",
                                  **config["method_options"], **config["task_options"])
    assert parameter_report(model)["trainable"] == 10_036_061  # the official code's 10.04M
    assert model.head.config.loss == "bce_on_softmax" and model.head.config.dropout == 0.0
    assert model.method.config.backbone_drop_path == 0.1
    # constant rates as the official script: adapters 5e-5, head 4e-6
    assert (config["lr"], config["min_lr"], config["warmup_epochs"]) == (5e-5, 5e-5, 0)
    assert config["lr"] * config["head_lr_factor"] == pytest.approx(4e-6)


# How each reference loader feeds frames, per paper config: (crop_mode, crop_pct, interpolation or None for the
# backbone's, training frames augmented). LAVISH and DG-SCT resize every whole frame to 192 × 192 (AVS: DG-SCT's
# model resizes AVSBench's 224 × 224 frames) and augment nothing; STG-CMA's AVS and AVQA loaders feed whole
# frames unaugmented; its AVE loader resizes the short side (bilinear), centre-crops, and augments training clips.
STG_CMA_AVE = ("center", 1.0, "bilinear", True)
WHOLE_FRAME = ("squash", 1.0, None, False)
REFERENCE_FRAMES = {
    **{f"ave/clip_vit_{size}_{preset}.yaml": STG_CMA_AVE for size in ("b16", "l14")
       for preset in ("tiny", "base", "vanilla")},
    "ave/lavish_swinv2_l.yaml": WHOLE_FRAME,
    "ave/swinv2_l_htsat_dg_sct.yaml": WHOLE_FRAME,
    "ave/swinv2_l_htsat_lavish_star.yaml": WHOLE_FRAME,
    "avs/stg_cma_swin_l_s4.yaml": WHOLE_FRAME,
    "avs/stg_cma_swin_l_ms3.yaml": WHOLE_FRAME,
    "avs/stg_cma_clip_vit_l14_s4.yaml": WHOLE_FRAME,
    "avs/lavish_swinv2_l_s4.yaml": WHOLE_FRAME,
    "avs/swinv2_l_htsat_dg_sct_s4.yaml": WHOLE_FRAME,
    "avs/swinv2_l_htsat_dg_sct_ms3.yaml": WHOLE_FRAME,
    "avqa/lavish_swinv2_l.yaml": WHOLE_FRAME,
    "avqa/stg_cma_swin_l.yaml": WHOLE_FRAME,
    "avqa/stg_cma_clip_vit_l14.yaml": WHOLE_FRAME,
    "avqa/swinv2_l_htsat_dg_sct.yaml": WHOLE_FRAME,
    "avvp/swinv2_l_htsat_dg_sct.yaml": WHOLE_FRAME,
    "avar/lavish_swinv2_l.yaml": WHOLE_FRAME,
    # rows no reference trains: the STG-CMA CLIP loader's geometry
    **{f"avvp/stg_cma_clip_vit_{size}.yaml": STG_CMA_AVE for size in ("b16", "l14")},
    **{f"avar/{row}.yaml": STG_CMA_AVE for row in ("av_stfp_clip_vit_b16", "av_stfp_clip_vit_l14", "probe_clip_vit_b16",
                                                   "stg_cma_clip_vit_b16_base", "stg_cma_clip_vit_l14_base")},
}


def test_paper_configs_feed_frames_as_their_reference_and_evaluate_avs_in_its_batches():
    import yaml

    papers = sorted(p for p in REPO.glob("configs/*/*.yaml") if not p.name.startswith("tiny_cpu"))
    assert {f"{p.parent.name}/{p.name}" for p in papers} == set(REFERENCE_FRAMES)  # a new paper row needs a line
    for path in papers:
        config = yaml.safe_load(path.read_text())
        crop_mode, crop_pct, interpolation, augmented = REFERENCE_FRAMES[f"{path.parent.name}/{path.name}"]
        video = config["model"]["video_transform"]
        assert (video["crop_mode"], video["crop_pct"], video.get("interpolation")) == (
            crop_mode, crop_pct, interpolation), path
        assert config["data"].get("augment", True) == augmented, path
        if config["model"]["task"] == "avs":  # AVSBench's test.sh: batches of 4 clips, on which F depends
            assert config["data"]["eval_batch_size"] == 4, path
        header = path.read_text().split("\nseed_everything")[0].replace("\\\n#", " ")  # commands on one line
        for line in header.splitlines():  # a cache prepared by the config's own command is accepted
            if line.lstrip("# ").startswith("avadapt prepare"):
                assert f"--crop-mode {crop_mode}" in line or (crop_mode == "center" and "--crop-mode" not in line)
                assert (interpolation is None) == ("--interpolation" not in line), path
