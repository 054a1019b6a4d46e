"""``avadapt fit --seeds``: one run per seed and the spread of their metrics; ``cost.json`` beside every run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file

from avadapt.cli import main
from avadapt.errors import OptionError
from avadapt.training.cost import peak_rss_bytes, reset_peak_rss
from avadapt.training.seeds import format_table, parse_seeds, summarise
from tests.conftest import TINY_CONFIG, tiny_fit_args

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]


def _fit_args(root, out, *extra: str) -> list[str]:
    """The tiny fit cut to one epoch of two training batches."""
    return tiny_fit_args(root, out, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                         "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "2", *extra)


def _logged(metrics_csv: Path) -> dict[str, list[float]]:
    """Every value each column of a CSVLogger file holds, in row order."""
    columns: dict[str, list[float]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if value:
                    columns.setdefault(key, []).append(float(value))
    return columns


def test_two_seeds_give_two_runs_and_their_mean_and_std(tmp_path, ave_root, capsys):
    main(_fit_args(ave_root, tmp_path, "--seeds", "0,1"))
    sweep = tmp_path / "seeds" / "version_0"
    summary = json.loads((sweep / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1]

    per_seed = {}
    for seed in (0, 1):
        run = sweep / f"seed_{seed}"
        assert (run / "adapter" / "adapter.safetensors").is_file() and (run / "curves.png").is_file()
        logged = _logged(run / "metrics.csv")
        per_seed[seed] = {name: values[-1] for name, values in logged.items() if name.startswith("test/")}
        per_seed[seed]["best_val/accuracy"] = max(logged["val/accuracy"])
    assert set(per_seed[0]) >= {"test/accuracy", "test/loss", "best_val/accuracy"}
    # the seeds start the adapters differently: the trained weights differ
    first, second = (load_file(sweep / f"seed_{s}" / "adapter" / "adapter.safetensors") for s in (0, 1))
    assert any(not first[key].equal(second[key]) for key in first)

    assert set(summary["metrics"]) == set(per_seed[0])
    for name, entry in summary["metrics"].items():
        a, b = per_seed[0][name], per_seed[1][name]
        mean = (a + b) / 2
        std = math.sqrt(((a - mean) ** 2 + (b - mean) ** 2) / (2 - 1))  # sample standard deviation
        assert entry["values"] == pytest.approx([a, b], abs=1e-6)
        assert entry["mean"] == pytest.approx(mean, abs=1e-6) and entry["std"] == pytest.approx(std, abs=1e-6)
    table = (sweep / "seeds.md").read_text()
    assert "| test/accuracy |" in table and "seed 1" in table
    assert "mean ± sample std" in capsys.readouterr().out

    for seed in (0, 1):
        cost = json.loads((sweep / f"seed_{seed}" / "cost.json").read_text())
        assert summary["runs"][str(seed)]["cost"] == cost
        assert cost["device"] == "cpu" and cost["precision"] == "32-true" and cost["devices"] == 1
        assert cost["device_name"] and cost["threads"] == 1
        assert cost["train_steps"] == 2  # limit_train_batches 2, one epoch
        assert 0 < cost["step_seconds_mean"] and 2 * cost["step_seconds_mean"] < cost["fit_seconds"] + 1e-3
        assert 0 < cost["test_seconds"] and cost["wall_seconds"] == pytest.approx(
            cost["fit_seconds"] + cost["test_seconds"], abs=2e-3)
        assert cost["peak_memory"] in ("rss", "rss_since_process_start")
        assert 50 * 2**20 < cost["peak_memory_bytes"] < 64 * 2**30  # torch alone is more than 50 MiB resident


def test_a_plain_fit_writes_its_cost_beside_its_metrics(tmp_path, ave_root):
    main(_fit_args(ave_root, tmp_path, "--test_after_fit", "false"))
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "metrics.csv").is_file()
    cost = json.loads((run / "cost.json").read_text())
    assert cost["train_steps"] == 2 and "test_seconds" not in cost and cost["wall_seconds"] == cost["fit_seconds"]


def test_peak_rss_follows_an_allocation_and_starts_afresh_after_a_reset():
    if not reset_peak_rss():
        pytest.skip("this system cannot reset the peak resident set size")
    before = peak_rss_bytes()
    block = bytearray(200 * 2**20)
    block[:: 4096] = b"\1" * len(block[:: 4096])  # touch every page: resident, not only reserved
    assert peak_rss_bytes() >= before + 190 * 2**20
    del block
    assert reset_peak_rss()
    assert peak_rss_bytes() < before + 100 * 2**20


def test_summary_of_runs_worked_by_hand():
    summary = summarise({0: {"acc": 0.5, "loss": 2.0}, 1: {"acc": 0.7}, 2: {"acc": 0.9, "loss": 1.0}})
    assert summary["acc"]["mean"] == pytest.approx(0.7)
    assert summary["acc"]["std"] == pytest.approx(0.2)  # sqrt((0.04 + 0 + 0.04) / 2)
    assert summary["loss"] == {"mean": 1.5, "std": pytest.approx(math.sqrt(0.5)), "values": [2.0, 1.0], "seeds": [0, 2]}
    assert summarise({3: {"acc": 0.4}})["acc"]["std"] is None
    table = format_table([0, 1, 2], summary, digits=2).splitlines()
    assert table[2] == "| acc | 0.70 ± 0.20 | 0.50 | 0.70 | 0.90 |"
    assert table[3] == "| loss | 1.50 ± 0.71 | 2.00 | – | 1.00 |"


@pytest.mark.parametrize("text, problem", [("0,x", "integers separated by commas"), ("1,1", "repeated")])
def test_bad_seed_lists_are_refused(text, problem):
    with pytest.raises(OptionError, match=problem):
        parse_seeds(text)
    assert parse_seeds("2,0,7") == [2, 0, 7]


def test_seeds_belong_to_fit_and_to_fresh_runs_in_their_own_folders(tmp_path, ave_root):
    with pytest.raises(OptionError, match="an option of fit"):
        main(["--debug", "test", "--config", str(TINY_CONFIG), "--seeds", "0,1"])
    for extra, problem in [(("--ckpt_path", str(tmp_path / "x.ckpt")), "does not take --ckpt_path"),
                           (("--trainer.logger", "false"), "leave trainer.logger unset"),
                           (("--checkpoint.dirpath", str(tmp_path / "c")), "checkpoint.dirpath")]:
        with pytest.raises(OptionError, match=problem):
            main(["--debug", *_fit_args(ave_root, tmp_path, "--seeds", "0,1", *extra)])


def test_on_a_gpu_the_peak_is_torchs_allocation_on_that_device(monkeypatch):
    """No GPU here: torch.cuda's figures are replaced to check which ones a CUDA run reports."""
    from types import SimpleNamespace

    import torch

    from avadapt.training.cost import RunCost

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    cost = RunCost()
    cost._step_seconds = [0.9, 0.2, 0.4]
    summary = cost.summary(SimpleNamespace(num_devices=1, precision="bf16-mixed"), torch.device("cuda", 0))
    assert summary["peak_memory"] == "cuda_max_allocated" and summary["peak_memory_bytes"] == 3 * 2**30
    assert summary["peak_memory_mib"] == 3072.0 and summary["device_name"] == "NVIDIA H100 80GB HBM3"
    assert summary["device"] == "cuda" and summary["precision"] == "bf16-mixed"
    assert summary["step_seconds_mean"] == pytest.approx(0.3) and summary["first_step_seconds"] == 0.9
