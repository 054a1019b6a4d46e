"""Stopping and resuming ``avadapt fit``: a killed and resumed run ends as the run that never stopped; files are
never half-written; the checkpoint to resume from is found, and a missing or damaged one is refused in one line.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from avadapt.adapter_files import CONFIG_NAME, WEIGHTS_NAME, load_adapter, save_adapter
from avadapt.cli import main
from avadapt.data.datamodule import AVDataModule
from avadapt.data.sampling import EpochLoader, EpochShuffle, clip_order, derive_seed
from avadapt.errors import CheckpointError
from avadapt.tasks.ave.synth import synthesize_ave
from avadapt.training.checkpoints import AtomicCheckpointIO, read_checkpoint
from avadapt.training.module import AVAdaptModule
from avadapt.training.run_log import RunLogger

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "ave" / "tiny_cpu.yaml"
RUN = Path("lightning_logs") / "version_0"
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),  # pytest's own argv is in sys.argv
    pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning"),
]


@pytest.fixture(scope="module")
def ave_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_ave")
    synthesize_ave(root, clips=48, seed=1, num_classes=16, size=32)  # 16 events + background = tiny_cpu's 17
    return root


def _fit_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(TINY_CONFIG), "--data.root", str(root), "--data.num_workers", "0",
            "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.precision", "32-true", *extra]


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


# ---- the same run, stopped or not -----------------------------------------------------------------------
def _run_command(args: list[str]) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "avadapt.cli", *args], env=environment, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, timeout: float) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def _rows(metrics_file: Path) -> list[dict[str, str]]:
    with metrics_file.open(newline="") as file:
        return list(csv.DictReader(file))


def _epochs_with(rows: list[dict[str, str]], key: str) -> list[int]:
    return [int(float(row["epoch"])) for row in rows if row.get(key)]


def test_a_killed_and_resumed_fit_ends_as_the_fit_that_never_stopped(tmp_path, ave_root):
    """SIGKILL after the first checkpoint, ``--ckpt_path last``: same best epoch, adapter tensors, test accuracy and
    metrics, all in the run's own folder. Stochastic depth is on, so the model's own random stream counts too."""
    epochs = 3
    extra = ("--trainer.max_epochs", str(epochs), "--trainer.log_every_n_steps", "1",
             "--model.method_options.drop_path", "0.2")
    uninterrupted = _run_command(_fit_args(ave_root, tmp_path / "uninterrupted", *extra))

    killed_root = tmp_path / "killed"
    killed = _run_command(_fit_args(ave_root, killed_root, *extra))
    last = killed_root / RUN / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 300
        while not last.exists():  # written under a temporary name: once there, it is complete
            assert killed.poll() is None, killed.communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.01)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)  # the session we started: the run and nothing else
        killed.communicate()
    stopped_at = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
    assert stopped_at < epochs - 1  # killed before its end: the resume has epochs left to train

    resumed_output = _finish(_run_command(_fit_args(ave_root, killed_root, *extra, "--ckpt_path", "last")), 900)
    _finish(uninterrupted, 900)

    assert [p.name for p in (killed_root / "lightning_logs").iterdir()] == ["version_0"]  # no new run folder
    assert "won't be reloaded" not in resumed_output  # the checkpoint callback kept its state
    reference, resumed = tmp_path / "uninterrupted" / RUN, killed_root / RUN
    # model selection over the whole run: the same best epoch, checkpoint name and score
    reference_extra = json.loads((reference / "adapter" / CONFIG_NAME).read_text())["extra"]
    resumed_extra = json.loads((resumed / "adapter" / CONFIG_NAME).read_text())["extra"]
    for key in ("epoch", "global_step", "best_score"):
        assert resumed_extra[key] == reference_extra[key], key
    assert Path(resumed_extra["checkpoint"]).name == Path(reference_extra["checkpoint"]).name
    # the exported adapter, tensor for tensor
    reference_weights = load_file(reference / "adapter" / WEIGHTS_NAME)
    resumed_weights = load_file(resumed / "adapter" / WEIGHTS_NAME)
    assert reference_weights.keys() == resumed_weights.keys()
    for key, value in reference_weights.items():
        assert torch.equal(resumed_weights[key], value), key
    # one metrics file holding every epoch once, equal to the uninterrupted run's, test accuracy included
    reference_rows, resumed_rows = _rows(reference / "metrics.csv"), _rows(resumed / "metrics.csv")
    assert _epochs_with(resumed_rows, "val/accuracy") == list(range(epochs))
    assert len(_epochs_with(resumed_rows, "test/accuracy")) == 1
    assert resumed_rows == reference_rows


def test_an_epoch_is_a_function_of_the_seed_and_its_number():
    sampler = EpochShuffle(50, seed=7)
    sampler.set_epoch(3)
    third = list(sampler)
    assert sorted(index for index, _ in third) == list(range(50))
    assert list(sampler) == third  # drawn again: the same order and item seeds
    sampler.set_epoch(4)
    assert [index for index, _ in sampler] != [index for index, _ in third]
    again = EpochShuffle(50, seed=7)
    again.set_epoch(3)
    assert list(again) == third
    assert derive_seed(7, 3) != derive_seed(7, 4) != derive_seed(8, 3)


def test_grouped_epochs_keep_runs_of_one_clip_with_one_seed():
    clips = [k % 7 for k in range(40)]  # 7 clips of 5 or 6 items, interleaved
    sampler = EpochShuffle(40, seed=3, clips=clips, items_per_clip=4)
    sampler.set_epoch(2)
    drawn = list(sampler)
    assert sorted(index for index, _ in drawn) == list(range(40))
    assert list(sampler) == drawn
    runs = []  # consecutive items sharing a seed
    for index, seed in drawn:
        if runs and runs[-1][0] == seed:
            runs[-1][1].append(index)
        else:
            runs.append((seed, [index]))
    assert all(len({clips[i] for i in items}) == 1 and len(items) <= 4 for _, items in runs)
    assert len(runs) == 14  # each clip: one run of 4 and one of the rest
    sampler.set_epoch(3)
    assert list(sampler) != drawn
    ungrouped = EpochShuffle(40, seed=3, clips=clips, items_per_clip=1)
    plain = EpochShuffle(40, seed=3)
    assert list(ungrouped) == list(plain)  # one item per run: the plain shuffle, unchanged
    with pytest.raises(ValueError, match="clips names 3 items"):
        EpochShuffle(40, seed=3, clips=[0, 1, 2], items_per_clip=2)


def test_evaluation_order_puts_a_clips_items_together():
    assert clip_order([2, 0, 2, 1, 0], 5) == [0, 2, 1, 4, 3]
    assert clip_order(None, 3) == [0, 1, 2]


class _Keys(Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, key):
        return torch.tensor(key)


def test_the_loader_draws_the_epoch_set_after_its_iterator_was_created():
    """Lightning opens the training iterator of a resumed run before it sets the sampler's epoch; worker processes
    fetch indices as soon as an iterator exists."""
    reference = EpochShuffle(12, seed=1)
    reference.set_epoch(5)
    expected = torch.tensor(list(reference))[:4]

    loader = EpochLoader(_Keys(), batch_size=4, sampler=EpochShuffle(12, seed=1), num_workers=1)
    iterator = iter(loader)  # epoch 0 when it was opened
    loader.sampler.set_epoch(5)
    assert torch.equal(next(iterator), expected)


def _tiny_module() -> AVAdaptModule:
    torch.manual_seed(0)
    return AVAdaptModule(backbone="test_vit", method="probe", task="ave", task_options={"num_classes": 17},
                         backbone_options={"img_size": 32}, fbank={"num_mel_bins": 32, "target_frames": 48})


def test_training_clips_are_augmented_the_same_by_any_number_of_loader_processes(ave_root):
    module = _tiny_module()
    batches = []
    for workers in (0, 2):
        data = AVDataModule(str(ave_root), batch_size=4, num_workers=workers, preprocessing=module.preprocessing)
        data.seed = 11
        data.setup("fit")
        loader = data.train_dataloader()
        loader.sampler.set_epoch(2)
        batches.append(next(iter(loader)))
    (first, second) = batches
    assert first.meta["row"] == second.meta["row"]
    assert torch.equal(first.video, second.video) and torch.equal(first.audio, second.audio)
    # and the crops are random: the same clips in another epoch are cropped differently
    data.seed = 12
    assert not torch.equal(next(iter(data.train_dataloader())).video, first.video)


# ---- finding, checking and continuing -------------------------------------------------------------------
def test_ckpt_path_last_without_a_checkpoint_stops_instead_of_starting_over(tmp_path, ave_root, capsys):
    empty = tmp_path / "empty"
    (empty / RUN).mkdir(parents=True)
    (empty / RUN / "metrics.csv").write_text("epoch,step\n")  # a run that stopped before its first checkpoint
    with pytest.raises(SystemExit) as stopped:
        main(_fit_args(ave_root, empty, "--ckpt_path", "last"))
    assert stopped.value.code == 1
    assert _error_line(capsys) == (f"avadapt: error: {empty}: no checkpoint to resume from "
                                   "(no run under it has checkpoints/last.ckpt)")
    assert not list(empty.rglob("*.ckpt")) and [p.name for p in (empty / "lightning_logs").iterdir()] == ["version_0"]


def test_a_damaged_last_checkpoint_is_refused_naming_the_newest_intact_one(tmp_path, ave_root, capsys):
    main(_fit_args(ave_root, tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                   "--trainer.limit_val_batches", "1", "--test_after_fit", "false"))
    checkpoints = tmp_path / RUN / "checkpoints"
    last = checkpoints / "last.ckpt"
    (best,) = [path for path in checkpoints.glob("*.ckpt") if path != last]
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    capsys.readouterr()

    with pytest.raises(SystemExit) as stopped:
        main(_fit_args(ave_root, tmp_path, "--ckpt_path", "last"))
    assert stopped.value.code == 1
    line = _error_line(capsys)
    assert line.startswith(f"avadapt: error: {last}: damaged checkpoint, it cannot be read (")
    assert line.endswith(f"; the newest intact checkpoint beside it is {best}")
    assert read_checkpoint(best)["epoch"] == 0


def test_a_continued_run_keeps_the_metrics_logged_up_to_its_checkpoint(tmp_path):
    run = tmp_path / "lightning_logs" / "version_3"
    run.mkdir(parents=True)
    header = ["epoch", "step", "train/loss"]
    rows = [["0", "4", "2.5"], ["0", "9", "2.0"], ["1", "14", "1.5"], ["1", "19", "1.0"]]
    (run / "metrics.csv").write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")

    logger = RunLogger.continuing(run, rows=2)  # the checkpoint was written after the second row
    assert logger.log_dir == str(run)
    logger.log_metrics({"train/loss": 1.25, "epoch": 1}, step=14)
    logger.log_metrics({"val/accuracy": 0.5, "epoch": 1}, step=19)  # a new column
    logger.save()

    with (run / "metrics.csv").open(newline="") as file:
        written = list(csv.reader(file))
    assert written[0] == ["epoch", "step", "train/loss", "val/accuracy"]
    assert written[1:] == [["0", "4", "2.5", ""], ["0", "9", "2.0", ""], ["1", "14", "1.25", ""],
                           ["1", "19", "", "0.5"]]


# ---- nothing half-written ---------------------------------------------------------------------------------
KILL_WHILE_WRITING = """
import io, os, signal, sys
import torch

def die(data: bytes | None, path) -> None:
    if data is not None:  # half the file reaches the disk, then the process is killed
        with open(path, "wb") as file:
            file.write(data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

kind, target = sys.argv[1], sys.argv[2]
if kind == "checkpoint":
    from avadapt.training.checkpoints import AtomicCheckpointIO
    real_save = torch.save
    def save(obj, path, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        die(buffer.getvalue(), path)
    torch.save = save
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(4096)}, "epoch": 2}, target)
else:
    from avadapt import adapter_files as adapter_io
    from tests.zoo import build
    def save_file(tensors, path, metadata=None):
        die(None, path)
    adapter_io.save_file = save_file
    adapter_io.save_adapter(build("vit", "stg_cma", seed=2, preset="tiny"), target, extra={"epoch": 2})
"""


def _kill_while_writing(kind: str, target: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING, kind, str(target)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def test_a_checkpoint_killed_while_written_leaves_the_previous_one(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    previous = {"state_dict": {"w": torch.zeros(4096)}, "epoch": 1, "global_step": 8, "loops": {},
                "optimizer_states": []}
    AtomicCheckpointIO().save_checkpoint(previous, last)
    before = last.read_bytes()

    _kill_while_writing("checkpoint", last)

    assert last.read_bytes() == before and read_checkpoint(last)["epoch"] == 1
    (stray,) = [path for path in last.parent.iterdir() if path != last]  # what the killed write left
    assert stray.name.startswith(".last.ckpt.") and stray.suffix == ".tmp"


def test_an_adapter_killed_while_written_never_loads_as_a_mixture(tmp_path):
    """Killed as the weights start to be written over an older export of the same model: the folder loads as the
    old adapter or the new one, or is refused; never as the new config.json beside the old weights."""
    from tests.zoo import build

    folder = tmp_path / "adapter"
    save_adapter(build("vit", "stg_cma", seed=1, preset="tiny"), folder, extra={"epoch": 1})
    old = {name: (folder / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)}
    save_adapter(build("vit", "stg_cma", seed=2, preset="tiny"), tmp_path / "new", extra={"epoch": 2})
    new = {name: (tmp_path / "new" / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)}
    assert old != new

    _kill_while_writing("adapter", folder)

    try:
        load_adapter(folder)
    except CheckpointError:
        return  # refused as it is: nothing wrong will be used
    present = {name: (folder / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)}
    assert present in (old, new)
