"""``avadapt predict`` over many videos: inputs expanded, one JSONL line per video, bad files on their line,
reruns resumed, windows of several videos per forward, bf16 where the CPU has it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from avadapt.adapter_files import load_adapter
from avadapt.cli import main
from avadapt.errors import OptionError
from avadapt.prediction import RESULTS_NAME, expand_inputs, precision_context, predict_video, predict_videos
from tests.media_helpers import make_clip
from tests.zoo import save_probe_adapter

pytestmark = pytest.mark.usefixtures("one_thread")
LENGTHS = (2.0, 3.0, 4.0, 5.0, 7.0, 3.0)  # seconds; T = 3 segments of 1 s: 1, 1, 2, 2, 3 and 1 windows


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    return save_probe_adapter(tmp_path_factory.mktemp("collection") / "adapter")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, list[Path], Path]:
    """A folder of short videos of several lengths, one in a subfolder, and one truncated video."""
    root = tmp_path_factory.mktemp("videos")
    good = [make_clip(root / ("sub" if k == 5 else "") / f"clip{k}.mp4", seconds=seconds, faststart=True)
            for k, seconds in enumerate(LENGTHS)]
    broken = root / "broken.mp4"
    broken.write_bytes(good[4].read_bytes()[: int(good[4].stat().st_size * 0.6)])  # opens, data ends early
    return root, good, broken


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RESULTS_NAME).read_text().splitlines()]


def test_a_folder_with_a_broken_file_gives_every_good_result_one_error_and_a_rerun_does_nothing(
        adapter, folder, tmp_path, capsys):
    root, good, broken = folder
    out = tmp_path / "out"
    main(["predict", str(root), "--adapter", str(adapter), "--out", str(out), "--batch", "3"])
    printed = capsys.readouterr()
    lines = _lines(out)
    assert sorted(line["video"] for line in lines) == sorted(str(path) for path in [*good, broken])
    errors = [line for line in lines if "error" in line]
    assert len(errors) == 1 and errors[0]["video"] == str(broken)
    assert "truncated or corrupt" in errors[0]["error"]
    assert printed.err.strip() == f"avadapt: skipped {broken}: {errors[0]['error']}"
    assert "6 predicted, 1 failed, 0 already in" in printed.out

    # each video's result is what predicting it alone, one window per forward, gives
    model = load_adapter(adapter)
    for path, seconds in zip(good, LENGTHS):
        line = next(line for line in lines if line["video"] == str(path))
        alone = predict_video(model, path, batch_windows=1)
        assert alone.frames is None  # AVE's timeline needs no frames, so none are kept
        scores, labels = alone.probabilities.max(-1)
        assert [s["second"] for s in line["segments"]] == list(range(int(seconds)))
        assert [s["label_index"] for s in line["segments"]] == labels.tolist()
        assert [s["score"] for s in line["segments"]] == pytest.approx(scores.tolist(), abs=1e-4)
        assert set(line["timings"]) == {"decode_s", "model_s", "total_s"} and line["precision"] == "fp32"
    assert not list(out.glob("*.png"))  # pictures only when asked

    before = (out / RESULTS_NAME).read_bytes()
    main(["predict", str(root), "--adapter", str(adapter), "--out", str(out)])
    assert (out / RESULTS_NAME).read_bytes() == before
    assert "0 predicted, 0 failed, 7 already in" in capsys.readouterr().out


def test_a_stopped_run_resumes_where_it_stopped(adapter, folder, tmp_path, capsys):
    _, good, _ = folder
    out = tmp_path / "out"
    out.mkdir()
    first = json.dumps({"video": str(good[0]), "segments": []})
    (out / RESULTS_NAME).write_text(first + "\n" + '{"video": "' + str(good[1])[:10])  # stopped mid-line
    main(["predict", *map(str, good[:3]), "--adapter", str(adapter), "--out", str(out)])
    lines = (out / RESULTS_NAME).read_text().splitlines()
    assert lines[0] == first and json.loads(lines[2])["video"] == str(good[1])  # the cut line stays apart
    assert [json.loads(line)["video"] for line in lines[2:]] == [str(good[1]), str(good[2])]
    assert "2 predicted, 0 failed, 1 already in" in capsys.readouterr().out


def test_windows_of_several_videos_share_a_forward(adapter, folder, capsys):
    _, good, _ = folder
    model = load_adapter(adapter)
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        results = list(predict_videos(model, good, batch_windows=2, progress=True))
    finally:
        hook.remove()
    assert sizes == [2] * 5  # 1 + 1 + 2 + 2 + 3 + 1 = 10 windows, 2 per forward, across videos
    assert [path for path, _ in results] == good  # each video once, when its last window is back
    bars = capsys.readouterr().err
    assert "6/6" in bars and "clip4.mp4" in bars  # the videos, and the windows of the one longer than a batch


def test_inputs_are_files_folders_globs_and_lists(folder, tmp_path, monkeypatch):
    root, good, broken = folder
    (root / "notes.txt").write_text("not a video")
    monkeypatch.chdir(root)
    listing = tmp_path / "list.txt"
    # a relative entry is read from the list's folder; a video named twice is predicted once
    relative = Path("..", root.name, good[4].name)
    listing.write_text(f"# videos to predict\n{good[1]}\n\n  {good[3]}\n{relative}\n")
    assert expand_inputs(["clip0.mp4", "sub", "clip[12].mp4", f"@{listing}"]) == [
        good[0], good[5], good[1], good[2], good[3], good[4]]
    assert expand_inputs(["**/*.mp4"]) == sorted([*good, broken])
    assert expand_inputs([str(root)]) == sorted([*good, broken])  # notes.txt is no video
    assert expand_inputs(["missing.mp4"]) == [root / "missing.mp4"]  # reported on its own line when predicted
    with pytest.raises(OptionError, match="nowhere.txt: the list of inputs cannot be read"):
        expand_inputs(["@nowhere.txt"])
    (root / "empty").mkdir(exist_ok=True)
    with pytest.raises(OptionError, match="empty: the folder holds no video"):
        expand_inputs(["empty"])
    with pytest.raises(OptionError, match=r"\*.mkv: the pattern matches no file"):
        expand_inputs(["*.mkv"])


def test_an_unreadable_list_ends_the_command_with_one_line(adapter, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", f"@{tmp_path / 'list.txt'}", "--adapter", str(adapter), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"avadapt: error: {tmp_path / 'list.txt'}: the list of inputs")


def test_pictures_of_videos_with_the_same_name_do_not_overwrite_each_other(adapter, folder, tmp_path):
    _, good, _ = folder
    twin = make_clip(tmp_path / "other" / good[0].name, seconds=2.0)
    out = tmp_path / "out"
    main(["predict", str(good[0]), str(twin), str(good[1]), "--adapter", str(adapter), "--out", str(out),
          "--pictures"])
    pictures = sorted(path.name for path in out.glob("*.png"))
    assert len(pictures) == 3 and "clip1.png" in pictures
    assert all(Path(line["png"]).is_file() for line in _lines(out))


def test_bf16_autocasts_where_the_cpu_has_it_and_warns_into_fp32_where_not(adapter, folder, monkeypatch):
    _, good, _ = folder
    cpu = torch.device("cpu")
    monkeypatch.setattr("avadapt.prediction.cpu_supports_bf16", lambda: True)
    with precision_context(cpu, "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    model = load_adapter(adapter)
    fp32 = predict_video(model, good[4])
    bf16 = predict_video(model, good[4], precision="bf16")
    assert not torch.equal(bf16.probabilities, fp32.probabilities)  # it ran in bf16
    torch.testing.assert_close(bf16.probabilities, fp32.probabilities, atol=0.05, rtol=0)

    monkeypatch.setattr("avadapt.prediction.cpu_supports_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16 arithmetic .*: predicting in fp32 instead"):
        fallback = predict_video(model, good[4], precision="bf16")
    torch.testing.assert_close(fallback.probabilities, fp32.probabilities, atol=0, rtol=0)
    with warnings.catch_warnings(), pytest.raises(OptionError, match="fp32 | bf16"):
        precision_context(cpu, "fp16")
