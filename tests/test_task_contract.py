"""The task contract: a task from a package outside avadapt (head, config, Task, dataset), found through the
``avadapt.tasks`` entry point group, trains through ``avadapt fit`` with one config file and nothing of
avadapt edited; its monitor and mode select the checkpoints, and it needs no audio front end or method preset
of its own."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from avadapt._registry import DATASETS, METHODS, TASKS
from avadapt.data.base import collate_av
from avadapt.models import build_without_weights, paper_audio_front_end
from avadapt.tasks import get_task

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::avadapt.adapter_files.RandomBackboneWarning"),
]

# A third party's task package, declared the way a new task is: the brightness of every segment's frame.
TOY_PACKAGE = '''
"""A toy audio-visual task: regress the brightness of every segment's frame."""

from dataclasses import dataclass

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection

from avadapt._config import JSONConfig
from avadapt._registry import DATASETS
from avadapt.data.base import ClipDataset
from avadapt.tasks import Task, TaskHead
from avadapt.tasks.base import register_task


@dataclass
class BrightnessConfig(JSONConfig):
    hidden_dim: int = 8


class BrightnessHead(TaskHead):
    config_class = BrightnessConfig

    def __init__(self, spec, config):
        super().__init__(spec, config)
        self.regressor = nn.Sequential(nn.Linear(spec.dim, config.hidden_dim), nn.GELU(),
                                       nn.Linear(config.hidden_dim, 1))

    def forward(self, features, **inputs):
        return self.regressor(features.video).squeeze(-1) + inputs["offset"][:, None]  # (B, T)

    def loss(self, outputs, targets):
        return nn.functional.mse_loss(outputs.float(), targets["brightness"])

    def metrics(self):
        return MetricCollection({"error": MeanAbsoluteError()})

    def update_metrics(self, metrics, outputs, targets):
        metrics.update(outputs.float().flatten(), targets["brightness"].flatten())


@register_task
class BrightnessTask(Task):
    name = "toy_brightness"
    head_class = BrightnessHead
    monitor = "error"
    monitor_mode = "min"
    inputs = ("offset",)
    dataset = "toy_brightness"
    num_segments = 3


@DATASETS.register("toy_brightness")
class BrightnessDataset(ClipDataset):
    """Frames of a random brightness per segment, made in memory; the fbank is noise. 6/4/4 clips."""

    task = "toy_brightness"
    num_segments = 3

    def __init__(self, root, split, *, source="auto", media_root=None, cache_dir=None, transform=None, fbank=None,
                 on_missing="error", augment=False):
        self.transform, self.fbank = transform, fbank
        self.clips = {"train": 6, "val": 4, "test": 4}[split]
        self.seed = {"train": 0, "val": 1, "test": 2}[split]

    def __len__(self):
        return self.clips

    def __getitem__(self, key):
        index = key[0] if isinstance(key, tuple) else key
        generator = torch.Generator().manual_seed(self.seed * 100 + index)
        size = self.transform.cfg.input_size
        level = torch.rand(self.num_segments, generator=generator)
        frames = (level[:, None, None, None] * 255).expand(-1, *size, 3).to(torch.uint8)  # (T, H, W, 3)
        fbank = torch.randn(self.num_segments, 1, self.fbank.num_mel_bins, self.fbank.target_frames,
                            generator=generator)
        return {"video": self.transform(frames), "audio": fbank, "brightness": level,
                "inputs": {"offset": torch.tensor(0.0)}, "meta": {"index": index}}
'''


def install_toy_package(site: Path) -> Path:
    """Write ``toy_avtask`` and its ``dist-info`` (an ``avadapt.tasks`` entry point) into ``site``, as pip
    would."""
    (site / "toy_avtask").mkdir(parents=True)
    (site / "toy_avtask" / "__init__.py").write_text(TOY_PACKAGE)
    info = site / "toy_avtask-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy_avtask\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[avadapt.tasks]\ntoy = toy_avtask\n")
    return site


@pytest.fixture(scope="module")
def toy_task(tmp_path_factory):
    """The toy task registered in this process (imported from its site folder, as the entry point would)."""
    site = install_toy_package(tmp_path_factory.mktemp("site"))
    sys.path.insert(0, str(site))
    try:
        __import__("toy_avtask")
    finally:
        sys.path.remove(str(site))
    return get_task("toy_brightness")


def test_every_task_reads_clips_of_its_datasets_length_and_models_default_to_it():
    for name in TASKS.names():
        task = get_task(name)
        assert DATASETS.get(task.dataset).num_segments == task.num_segments, name
    model = build_without_weights(backbone="test_vit", method="stg_cma", task="avs")
    assert model.method.num_frames == 5 and model.method.temporal_embeddings["video"].shape[1] == 5


def test_collate_puts_inputs_apart_from_targets():
    items = [{"video": torch.zeros(2, 3, 4, 4), "audio": torch.zeros(2, 1, 4, 4), "brightness": torch.ones(2),
              "inputs": {"offset": torch.tensor(float(k))}, "meta": {"index": k}} for k in range(3)]
    batch = collate_av(items)
    assert set(batch.targets) == {"brightness"} and batch.targets["brightness"].shape == (3, 2)
    assert batch.inputs["offset"].tolist() == [0.0, 1.0, 2.0]
    assert batch.meta["index"] == [0, 1, 2]


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_builds_a_new_task_with_its_defaults(toy_task, method):
    """A task that declares no audio front end and that no method has a preset for: the method's own front
    end, else the family's; the method's default settings; the task's clip length."""
    own = {"dg_sct": "htsat"}.get(method)
    expected = own or "vit"
    assert paper_audio_front_end(method, "vit", toy_task.name) == expected
    assert paper_audio_front_end(method, "swin", toy_task.name) == (own or "stg_cma_swin_ave")
    model = build_without_weights(backbone="test_vit", method=method, task=toy_task.name,
                                  audio_front_end=expected, hidden_dim=4)
    assert type(model.head) is toy_task.head_class and model.head.config.hidden_dim == 4
    assert model.method.num_frames == toy_task.num_segments == 3


def test_a_task_from_another_package_trains_through_its_entry_point(tmp_path):
    site = install_toy_package(tmp_path / "site")
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 2, "default_root_dir": str(tmp_path),
                    "enable_progress_bar": False, "precision": "32-true", "log_every_n_steps": 1},
        "model": {"backbone": "test_vit", "method": "stg_cma", "task": "toy_brightness",
                  "method_options": {"ratio": "1/4"}, "task_options": {"hidden_dim": 4},
                  "backbone_options": {"img_size": 32}, "fbank": {"num_mel_bins": 32, "target_frames": 32},
                  "lr": 1e-3, "warmup_epochs": 0},
        "data": {"root": str(tmp_path / "unused"), "batch_size": 2, "num_workers": 0},
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # the task is imported by nobody but the registry, which finds it through the entry point
    names = "from avadapt._registry import TASKS; print(TASKS.names())"
    listed = subprocess.run([sys.executable, "-c", names], env=env, capture_output=True, text=True,
                            check=True)
    assert "toy_brightness" in listed.stdout
    fit = [sys.executable, "-m", "avadapt.cli", "fit", "--config", str(tmp_path / "toy.yaml")]
    done = subprocess.run(fit, check=False, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    run = tmp_path / "lightning_logs" / "version_0"
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    # selected on the toy's own metric, with its own mode, named after it
    assert len(checkpoints) == 2 and any(name.startswith("epoch") and "val_error" in name for name in checkpoints)
    with open(run / "metrics.csv") as rows:
        logged = list(csv.DictReader(rows))
    assert {"val/error", "test/error", "train/loss"} <= set(logged[0])
    val_errors = [float(row["val/error"]) for row in logged if row.get("val/error")]
    adapter = json.loads((run / "adapter" / "config.json").read_text())
    assert (run / "adapter" / "adapter.safetensors").is_file()
    assert adapter["spec"]["task"] == "toy_brightness" and adapter["extra"]["monitor"] == "val/error"
    assert adapter["extra"]["best_score"] == pytest.approx(min(val_errors))  # mode "min": the lowest error won
    # no front end given: the ViT family's, with the config's smaller fbank
    assert adapter["preprocessing"]["audio_front_end"] == "vit"
    assert adapter["preprocessing"]["fbank"]["num_mel_bins"] == 32
