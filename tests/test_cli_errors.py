"""A user's mistake ends the ``avadapt`` command with one line naming the file and the problem.

Each test runs the real command (``avadapt.cli.main``) on a file made broken in one way, next to an adapter
directory and a clip that work (checked by the first test), and reads what reaches stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import avadapt
from avadapt.adapter_files import CONFIG_NAME, WEIGHTS_NAME, BackboneMismatchWarning, save_adapter
from avadapt.cli import main
from avadapt.errors import MediaError
from avadapt.tasks.ave.synth import synthesize_ave
from tests.media_helpers import make_clip
from tests.zoo import FRAMES, TINY_BACKBONES, backbone_weights, save_probe_adapter

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "ave" / "tiny_cpu.yaml"
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),  # pytest's own argv is in sys.argv
]


@pytest.fixture(autouse=True)
def _no_debug_from_the_environment(monkeypatch):
    monkeypatch.delenv("AVADAPT_DEBUG", raising=False)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    return save_probe_adapter(tmp_path_factory.mktemp("errors") / "adapter")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("errors") / "clip.mp4", seconds=4.0, faststart=True)


def _error_line(capsys, argv: list[str], status: int = 1) -> str:
    """Run the command, check that it exits with ``status`` and one stderr line, and return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == status
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _broken_copy(adapter: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(adapter, tmp_path / "adapter"))


def test_the_adapter_and_clip_the_other_tests_break_work(adapter, clip, tmp_path, capsys):
    main(["predict", str(clip), "--adapter", str(adapter), "--out", str(tmp_path / "pred")])
    assert json.loads((tmp_path / "pred.json").read_text())["seconds"] == 4
    assert capsys.readouterr().err == ""


def _truncated(clip: Path, tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "truncated.mp4"
    path.write_bytes(clip.read_bytes()[: int(clip.stat().st_size * 0.6)])  # index first: opens, data ends early
    return path, "truncated or corrupt"


def _truncated_before_the_index(clip: Path, tmp_path: Path) -> tuple[Path, str]:
    whole = make_clip(tmp_path / "whole.mp4", seconds=4.0)  # index (moov) at the end, cut away
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path, "cannot be opened as a media file (truncated or corrupt?)"


def _empty(clip: Path, tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path, "empty file (0 bytes)"


def _missing(clip: Path, tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "missing.mp4", "file not found"


def _without_audio(clip: Path, tmp_path: Path) -> tuple[Path, str]:
    return make_clip(tmp_path / "mute.mp4", seconds=4.0, audio=False), "no audio stream"


def _without_video(clip: Path, tmp_path: Path) -> tuple[Path, str]:
    return make_clip(tmp_path / "sound.m4a", seconds=4.0, video=False), "no video stream"


@pytest.mark.parametrize("make_video", [_truncated, _truncated_before_the_index, _empty, _missing,
                                        _without_audio, _without_video], ids=lambda f: f.__name__.strip("_"))
def test_predict_on_a_broken_video(make_video, adapter, clip, tmp_path, capsys):
    video, problem = make_video(clip, tmp_path)
    line = _error_line(capsys, ["predict", str(video), "--adapter", str(adapter), "--out", str(tmp_path / "p")])
    assert line.startswith(f"avadapt: error: {video}: {problem}"), line
    assert not (tmp_path / "p.json").exists()


def _missing_directory(adapter: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    return tmp_path / "nowhere", tmp_path / "nowhere", "adapter directory not found"


def _truncated_weights(adapter: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    directory = _broken_copy(adapter, tmp_path)
    weights = directory / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return directory, weights, "not a readable safetensors file (truncated, corrupt or another format)"


def _missing_weights(adapter: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    directory = _broken_copy(adapter, tmp_path)
    (directory / WEIGHTS_NAME).unlink()
    return directory, directory / WEIGHTS_NAME, "not found"


def _malformed_config(adapter: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    directory = _broken_copy(adapter, tmp_path)
    config = directory / CONFIG_NAME
    config.write_text(config.read_text().replace('"spec":', '"spec"', 1))  # a colon lost in an edit
    return directory, config, "not valid JSON: Expecting ':' delimiter at line"


def _edited_config(adapter: Path, tmp_path: Path, edit) -> Path:
    directory = _broken_copy(adapter, tmp_path)
    config = json.loads((directory / CONFIG_NAME).read_text())
    edit(config)
    (directory / CONFIG_NAME).write_text(json.dumps(config))
    return directory


def _incomplete_config(adapter: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    def drop(config):
        del config["spec"]["method"], config["spec"]["task_config"]

    directory = _edited_config(adapter, tmp_path, drop)
    return directory, directory / CONFIG_NAME, "incomplete adapter config, missing spec.method, spec.task_config"


def _newer_config(adapter: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    directory = _edited_config(adapter, tmp_path, lambda config: config.update(format_version=7))
    return directory, directory / CONFIG_NAME, "written in format version 7 by a newer avadapt; this one reads up to"


@pytest.mark.parametrize("break_adapter", [_missing_directory, _truncated_weights, _missing_weights, _malformed_config,
                                           _incomplete_config, _newer_config], ids=lambda f: f.__name__.strip("_"))
def test_predict_with_a_broken_adapter(break_adapter, adapter, clip, tmp_path, capsys):
    directory, broken_file, problem = break_adapter(adapter, tmp_path)
    line = _error_line(capsys, ["predict", str(clip), "--adapter", str(directory), "--out", str(tmp_path / "p")])
    assert line.startswith(f"avadapt: error: {broken_file}: {problem}"), line


@pytest.fixture
def own_loop_adapter(tmp_path) -> tuple[Path, Path]:
    """An adapter written by ``save_adapter`` from a ``create_model`` model, given nothing else (as in a training
    loop of one's own), on a copy of the tiny backbone file; returns the adapter directory and that file."""
    weights = Path(shutil.copy(backbone_weights("vit"), tmp_path / "backbone.safetensors"))
    name, options = TINY_BACKBONES["vit"]
    model = avadapt.create_model(backbone=name, method="probe", task="ave", backbone_options=options,
                                 weights=weights, num_frames=FRAMES)
    return save_adapter(model, tmp_path / "adapter"), weights


def test_an_adapter_saved_from_ones_own_loop_predicts(own_loop_adapter, clip, tmp_path, capsys):
    adapter, _ = own_loop_adapter
    main(["predict", str(clip), "--adapter", str(adapter), "--out", str(tmp_path / "pred")])
    assert json.loads((tmp_path / "pred.json").read_text())["seconds"] == 4
    assert capsys.readouterr().err == ""


def _moved(weights: Path, tmp_path: Path) -> str:
    shutil.move(weights, tmp_path / "moved.safetensors")
    return "backbone weights file recorded by the adapter {adapter} not found (moved or deleted); give its new " \
           "place with --weights PATH (its sha256 must be "


def _deleted(weights: Path, tmp_path: Path) -> str:
    weights.unlink()
    return "backbone weights file recorded by the adapter {adapter} not found (moved or deleted)"


def _replaced(weights: Path, tmp_path: Path) -> str:
    shutil.copy(backbone_weights("vit", seed=1), weights)  # same shapes, other values
    return "has changed since it was the backbone weights {adapter} was trained with (sha256 "


@pytest.mark.parametrize("command", ["predict", "ask"])
@pytest.mark.parametrize("break_backbone", [_moved, _deleted, _replaced], ids=lambda f: f.__name__.strip("_"))
def test_an_adapter_whose_backbone_file_is_gone_or_changed_stops(break_backbone, command, own_loop_adapter, clip,
                                                                  tmp_path, capsys):
    adapter, weights = own_loop_adapter
    problem = break_backbone(weights, tmp_path).format(adapter=adapter)
    argv = [command, str(clip), *(["what is sounding?"] if command == "ask" else []), "--adapter", str(adapter),
            "--out", str(tmp_path / "p")]
    line = _error_line(capsys, argv)
    assert line.startswith(f"avadapt: error: {weights.resolve()}: {problem}"), line
    assert not (tmp_path / "p.json").exists()


def test_a_moved_backbone_file_is_found_with_weights_and_a_replaced_one_used_when_allowed(own_loop_adapter, clip,
                                                                                       tmp_path, capsys):
    adapter, weights = own_loop_adapter
    _moved(weights, tmp_path)
    main(["predict", str(clip), "--adapter", str(adapter), "--weights", str(tmp_path / "moved.safetensors"),
          "--out", str(tmp_path / "moved")])
    assert (tmp_path / "moved.json").is_file() and capsys.readouterr().err == ""

    shutil.copy(backbone_weights("vit", seed=1), weights)  # another file where the moved one was
    other = ["predict", str(clip), "--adapter", str(adapter), "--weights", str(weights), "--out", str(tmp_path / "o")]
    line = _error_line(capsys, other)
    assert line.startswith(f"avadapt: error: {weights}: is another file than the backbone weights {adapter} was "
                           "trained with"), line
    assert line.endswith("or use this one anyway with --weights-mismatch ok (weights_mismatch='ok')"), line
    with pytest.warns(BackboneMismatchWarning, match="used as asked"):
        main([*other, "--weights-mismatch", "ok"])
    assert (tmp_path / "o.json").is_file()


def test_an_unknown_option_value_exits_with_status_2(capsys):
    line = _error_line(capsys, ["params", "--backbone", "test_vit", "--method", "lora"], status=2)
    assert line.startswith("avadapt: error: unknown method 'lora'; known: "), line
    assert "stg_cma" in line


def test_a_lightning_subcommand_reports_a_missing_annotation_file(tmp_path, capsys):
    root = tmp_path / "not_ave"
    root.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(TINY_CONFIG), "--data.root", str(root), "--data.num_workers", "0",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.fast_dev_run", "1",
              "--trainer.logger", "false"])
    assert exit_info.value.code == 1
    last_line = capsys.readouterr().err.splitlines()[-1]  # after Lightning's own messages
    assert last_line == f"avadapt: error: {root / 'Annotations.txt'}: AVE annotation file not found"


def test_prepare_ends_with_the_count_of_clips_it_could_not_decode(tmp_path, capsys):
    root, cache = tmp_path / "ave", tmp_path / "cache"
    synthesize_ave(root, clips=2, seed=0, num_classes=2, size=32)
    broken = min((root / "AVE").glob("*.mp4"))
    broken.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "ave", "--root", str(root), "--out", str(cache), "--image-size", "32"])
    assert exit_info.value.code == 1
    last_line = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    problem = "1 clip(s) could not be decoded (listed there with the reason)"
    assert last_line == f"avadapt: error: {cache / 'bad_clips.tsv'}: {problem}"
    assert f"{broken.stem}\t{broken}\tempty file (0 bytes)" in (cache / "bad_clips.tsv").read_text()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_lets_the_error_through_with_its_traceback(how, adapter, tmp_path, monkeypatch):
    argv = ["predict", str(tmp_path / "missing.mp4"), "--adapter", str(adapter)]
    if how == "flag":
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv("AVADAPT_DEBUG", "1")
    with pytest.raises(MediaError, match="missing.mp4: file not found"):
        main(argv)


def test_a_bug_keeps_its_traceback(adapter, clip, monkeypatch):
    def broken_loader(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr("avadapt.adapter_files.load_adapter", broken_loader)
    with pytest.raises(ZeroDivisionError):
        main(["predict", str(clip), "--adapter", str(adapter)])


def test_the_console_script_prints_one_line_and_exits_1(adapter, tmp_path):
    """The installed ``avadapt`` script in a fresh process: its real stderr and exit status."""
    script = shutil.which("avadapt", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the avadapt console script is not installed beside this Python")
    src = str(Path(avadapt.__file__).resolve().parents[1])  # the code these tests import, not another checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    env.pop("AVADAPT_DEBUG", None)
    video = tmp_path / "empty.mp4"
    video.write_bytes(b"")
    command = [script, "predict", str(video), "--adapter", str(adapter), "--out", str(tmp_path / "p")]

    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == [f"avadapt: error: {video}: empty file (0 bytes)"]
    assert plain.stdout == ""

    debug = subprocess.run(command, capture_output=True, text=True, env={**env, "AVADAPT_DEBUG": "1"}, timeout=300,
                           check=False)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert f"avadapt.errors.MediaError: {video}: empty file (0 bytes)" in debug.stderr
