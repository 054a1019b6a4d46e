"""Classification from class names end to end on tiny random encoders: synthetic corpus → prepare → pretrain →
zero-shot → few-shot → t-SNE picture (the demo at its smallest), then the commands on the files it wrote, and
their one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("open_clip")
pytest.importorskip("transformers")
pytest.importorskip("sklearn")

from avadapt.cli import main
from avadapt.text.demo import CORPUS_DATASET, TextDemo, run_text_demo
from avadapt.text.shots import ShotSelection

pytestmark = [pytest.mark.usefixtures("one_thread")]

MINIATURE = TextDemo(clips=30, num_classes=5, seconds=(2, 3), pretrain_epochs=2, shots=1, fewshot_epochs=1,
                     batch_size=4)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zeroshot_demo")
    return out, run_text_demo(out, settings=MINIATURE)


def test_pretrain_zeroshot_fewshot_embed_run_and_record_what_they_did(demo):
    out, metrics = demo
    for key in ("zero_shot_accuracy", "frozen_zero_shot_accuracy", "few_shot_1_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["chance_accuracy"] == pytest.approx(1 / 5, abs=1e-4)
    assert json.loads((out / "metrics.json").read_text())["test_clips"] == metrics["test_clips"] > 0
    assert (out / "embedding.png").stat().st_size > 1000
    selection = ShotSelection.from_json((out / "fewshot" / "shots.json").read_text())
    assert selection.k == 1 and len(selection.indices) == 5  # one clip of each of the five classes
    record = json.loads((out / "pretrain" / "adapter" / "text_adapter.json").read_text())
    assert record["class_names"] == (out / "corpus" / "classes.txt").read_text().split("\n")[:5]


def test_pretraining_trains_the_adapters_and_never_writes_the_towers(demo):
    out, _ = demo
    state = load_file(str(out / "pretrain" / "adapter" / "text_adapter.safetensors"))
    assert not any(key.startswith(("clip.", "clap.", "dg_sct.backbone.", "dg_sct.audio_encoder.")) for key in state)
    gates = [v for k, v in state.items() if k.startswith("dg_sct.") and k.endswith("gate")]
    assert gates and any(float(g.abs().max()) > 0 for g in gates)  # zero-initialised, moved by training
    assert "prompts.context" in state


def test_zeroshot_command_gives_the_python_entrys_scores(demo, tmp_path):
    out, metrics = demo
    scores = tmp_path / "scores.json"
    main(["zeroshot", str(out / "corpus"), "--dataset", CORPUS_DATASET, "--adapter", str(out / "pretrain" / "adapter"),
          "--cache", str(out / "cache"), "--out", str(scores)])
    result = json.loads(scores.read_text())
    assert result["accuracy"] == pytest.approx(metrics["zero_shot_accuracy"])
    assert result["clips"] == metrics["test_clips"]


def test_class_file_names_the_classes_scored(demo, tmp_path):
    out, _ = demo
    names = (out / "corpus" / "classes.txt").read_text().split("\n")[:5]
    reversed_file = tmp_path / "classes.txt"
    reversed_file.write_text("\n".join(reversed(names)) + "\n")
    main(["zeroshot", str(out / "corpus"), "--dataset", CORPUS_DATASET, "--adapter", str(out / "pretrain" / "adapter"),
          "--cache", str(out / "cache"), "--classes", str(reversed_file), "--out", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text())["classes"] == 5


def _one_line_error(capsys, argv: list[str]) -> str:
    """The one line ``avadapt ARGV`` prints on stderr before it exits."""
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _zeroshot_argv(out, *more: str) -> list[str]:
    return ["zeroshot", str(out / "corpus"), "--dataset", CORPUS_DATASET, "--adapter",
            str(out / "pretrain" / "adapter"), "--cache", str(out / "cache"), *more]


@pytest.mark.parametrize("problem", ["duplicate", "empty"])
def test_bad_class_file_is_one_line(demo, tmp_path, capsys, problem):
    out, _ = demo
    bad = tmp_path / "classes.txt"
    bad.write_text("dog\ncat\ndog\n" if problem == "duplicate" else "dog\n\ncat\n")
    assert str(bad) in _one_line_error(capsys, _zeroshot_argv(out, "--classes", str(bad)))


def test_more_shots_than_the_smallest_class_is_one_line(demo, tmp_path, capsys):
    out, _ = demo
    argv = ["fewshot", *_zeroshot_argv(out)[1:], "--shots", "99", "--out", str(tmp_path / "few")]
    assert "--shots 99 is more than" in _one_line_error(capsys, argv)


def test_wrong_weights_for_the_encoders_are_one_line(demo, tmp_path, capsys):
    out, _ = demo
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"module.something_else": torch.zeros(3)}}, other)
    assert str(other) in _one_line_error(capsys, _zeroshot_argv(out, "--clap-weights", str(other)))


def test_adapter_folder_missing_is_one_line(demo, tmp_path, capsys):
    out, _ = demo
    argv = ["zeroshot", str(out / "corpus"), "--dataset", CORPUS_DATASET, "--adapter", str(tmp_path / "none")]
    assert "text_adapter.json: not found" in _one_line_error(capsys, argv)


def test_pretrain_resumes_from_its_last_checkpoint(demo, tmp_path):
    """A second pretrain call in the same folder with more epochs goes on from last.ckpt: one more epoch."""
    out, _ = demo
    from avadapt.text.run import pretrain

    encoders = json.loads((out / "pretrain" / "adapter" / "text_adapter.json").read_text())["encoders"]
    run = tmp_path / "run"
    options = {"val_fraction": MINIATURE.val_fraction}
    pretrain(out / "corpus", CORPUS_DATASET, run, encoders, cache=out / "cache", model=MINIATURE.model_options(),
             epochs=1, batch_size=4, progress=False, dataset_options=options)
    first = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    pretrain(out / "corpus", CORPUS_DATASET, run, encoders, cache=out / "cache", model=MINIATURE.model_options(),
             epochs=2, batch_size=4, progress=False, dataset_options=options)
    second = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert second["epoch"] > first["epoch"]
    assert first["global_step"] < second["global_step"] == 2 * first["global_step"]
    assert not any(key.startswith("model.clip.") for key in second["state_dict"])
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert len([r for r in rows if r.split(",")[-1]]) >= 2  # the first run's validation row kept, the second's added


def test_demo_task_name_is_not_a_registered_task():
    from avadapt._registry import TASKS
    from avadapt.text.cli import TEXT_DEMO

    assert TEXT_DEMO not in TASKS.names()



def test_the_command_line_loads_no_model_code_before_a_command_runs():
    """avadapt.cli reads the text commands' options at import; torch must still be unloaded then (its huge-page
    switch acts only before the first tensor)."""
    import subprocess
    import sys

    code = "import sys, avadapt.cli; print('torch' in sys.modules, 'timm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]
