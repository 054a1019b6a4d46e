"""AVQA end to end through the command line: synth → prepare → fit → adapter → ask, with the same answers from
the reloaded adapter; ``ask``'s handling of unknown words and of an empty question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import save_file

from avadapt.adapter_files import load_adapter
from avadapt.cli import main
from avadapt.models import create_model
from avadapt.prediction import ask
from avadapt.tasks.avqa.questions import read_avqa_json
from avadapt.tasks.avqa.task import AVQATask

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "avqa" / "tiny_cpu.yaml"
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny AVQA adapter trained for two steps on a synthetic set, and where everything lies."""
    tmp = tmp_path_factory.mktemp("avqa_pipeline")
    data, cache = tmp / "avqa", tmp / "cache"
    main(["synth", "avqa", "--out", str(data), "--clips", "12", "--seed", "2"])
    main(["prepare", "avqa", "--root", str(data), "--out", str(cache), "--image-size", "64",
          "--num-mel-bins", "64", "--target-frames", "48"])
    assert (cache / "question_vocab.json").is_file()
    backbone = create_model(backbone="test_vit", method="probe", task="avqa", backbone_options={"img_size": 64},
                            **AVQATask.counting_options).backbone.model
    weights = tmp / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(weights))
    main(["fit", "--config", str(TINY_CONFIG), "--data.root", str(data), "--data.cache_dir", str(cache),
          "--model.task_options", json.dumps({"question_vocab": str(cache / "question_vocab.json")}),
          "--model.weights", str(weights), "--trainer.default_root_dir", str(tmp / "runs"),
          "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.precision", "32-true",
          "--trainer.enable_progress_bar", "false"])
    return data, tmp / "runs" / "lightning_logs" / "version_0", tmp


def test_fit_selects_on_val_accuracy_and_logs_the_groups(trained):
    _, run, _ = trained
    assert any("val_accuracy" in p.name for p in (run / "checkpoints").glob("epoch*.ckpt"))
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/accuracy", "val/audio", "val/visual", "val/audio_visual", "test/accuracy",
            "test/type/audio_counting"} <= set(header)
    adapter = json.loads((run / "adapter" / "config.json").read_text())
    assert len(adapter["class_names"]) == 42 and "more than ten" in adapter["class_names"]
    assert len(adapter["spec"]["task_config"]["question_vocab"]) > 10  # the vocabulary travels with the adapter


def test_ask_answers_the_same_from_the_reloaded_adapter(trained, capsys):
    data, run, tmp = trained
    question = read_avqa_json(data / "avqa-test.json")[0]
    video = data / f"{question.video_id}.mp4"
    main(["ask", str(video), question.text, "--adapter", str(run / "adapter"), "--out", str(tmp / "answer")])
    printed = capsys.readouterr().out
    written = json.loads((tmp / "answer.json").read_text())
    assert printed.startswith("1. ") and written["answers"][0]["answer"] in printed
    assert (tmp / "answer.png").read_bytes()[:4] == b"\x89PNG" and written["unknown_words"] == []
    again = ask(load_adapter(run / "adapter"), video, question.text)
    assert again["answers"] == written["answers"]


def test_ask_reports_unknown_words_and_refuses_an_empty_question(trained, capsys):
    data, run, _ = trained
    video = next(data.glob("*.mp4"))
    known = read_avqa_json(data / "avqa-train.json")[0].tokens  # words the vocabulary was built from
    result = ask(load_adapter(run / "adapter"), video, " ".join(["theremin", *known[1:]]) + "?")
    assert result["unknown_words"] == ["theremin"] and len(result["answers"]) == 3
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", str(video), "  ", "--adapter", str(run / "adapter")])
    assert exit_info.value.code == 2 and "the question is empty" in capsys.readouterr().err


def test_predict_with_a_question_answers_as_ask_does(trained, capsys):
    data, run, tmp = trained
    question = read_avqa_json(data / "avqa-test.json")[0]
    video = data / f"{question.video_id}.mp4"
    asked = ask(load_adapter(run / "adapter"), video, question.text, top=5)
    expected = asked["answers"][1]["answer"]  # scored as the expected answer: the top one differs from it
    main(["predict", str(video), "--adapter", str(run / "adapter"), "--question", question.text, "--top", "5",
          "--labels", expected, "--out", str(tmp / "predicted")])
    written = json.loads((tmp / "predicted.json").read_text())
    assert written["answers"] == asked["answers"] and len(written["answers"]) == 5
    assert written["correct"] is False and expected in written["agreement"]
    assert written["temporal_attention"] == asked["temporal_attention"]
    assert written["answers"][0]["answer"] in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(video), "--adapter", str(run / "adapter"), "--out", str(tmp / "no_question")])
    assert exit_info.value.code == 2 and "--question" in capsys.readouterr().err
