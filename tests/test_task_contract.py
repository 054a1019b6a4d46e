"""The task contract: a task declared in one module (head, config, Task, dataset) trains through ``avadapt fit``
with one config file and nothing else edited; its monitor and mode select the checkpoints."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import pytest
import torch
import yaml
from torch import nn
from torchmetrics import MeanAbsoluteError, MetricCollection

from avadapt._config import JSONConfig
from avadapt._registry import DATASETS, TASKS
from avadapt.cli import main
from avadapt.data.base import ClipDataset, collate_av
from avadapt.tasks import Task, TaskHead, get_task
from avadapt.tasks.base import register_task
from avadapt.types import AVFeatures, FeatureSpec

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::avadapt.io.RandomBackboneWarning"),
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]


# ---- a toy task, declared the way a new task would be: brightness of every segment's frame ----------------
@dataclass
class BrightnessConfig(JSONConfig):
    hidden_dim: int = 8


class BrightnessHead(TaskHead):
    config_class = BrightnessConfig

    def __init__(self, spec: FeatureSpec, config: BrightnessConfig):
        super().__init__(spec, config)
        self.regressor = nn.Sequential(nn.Linear(spec.dim, config.hidden_dim), nn.GELU(),
                                       nn.Linear(config.hidden_dim, 1))

    def forward(self, features: AVFeatures, **inputs: torch.Tensor) -> torch.Tensor:
        return self.regressor(features.video).squeeze(-1) + inputs["offset"][:, None]  # (B, T)

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(outputs.float(), targets["brightness"])

    def metrics(self) -> MetricCollection:
        return MetricCollection({"error": MeanAbsoluteError()})

    def update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor,
                       targets: dict[str, torch.Tensor]) -> None:
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
    """Random frames of a random brightness per segment; the fbank is noise. Splits of 6/4/4 clips."""

    task = "toy_brightness"
    num_segments = 3

    def __init__(self, root, split, *, source="auto", media_root=None, cache_dir=None, transform=None, fbank=None,
                 on_missing="error", augment=False):
        self.transform, self.fbank = transform, fbank
        self.clips = {"train": 6, "val": 4, "test": 4}[split]
        self.seed = {"train": 0, "val": 1, "test": 2}[split]

    def __len__(self) -> int:
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


def test_every_task_reads_clips_of_its_datasets_length_and_models_default_to_it():
    from avadapt.models import build_without_weights

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


def test_a_task_declared_in_one_module_trains_with_one_config(tmp_path):
    assert get_task("toy_brightness").monitor == "error" and "toy_brightness" in TASKS
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 2, "default_root_dir": str(tmp_path),
                    "enable_progress_bar": False, "precision": "32-true", "log_every_n_steps": 1},
        "model": {"backbone": "test_vit", "method": "stg_cma", "task": "toy_brightness",
                  "method_options": {"ratio": "1/4"}, "task_options": {"hidden_dim": 4},
                  "backbone_options": {"img_size": 32}, "audio_front_end": "vit",
                  "fbank": {"num_mel_bins": 32, "target_frames": 32}, "lr": 1e-3, "warmup_epochs": 0},
        "data": {"root": str(tmp_path / "unused"), "batch_size": 2, "num_workers": 0},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    run = tmp_path / "lightning_logs" / "version_0"
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    # selected on the toy's own metric, with its own mode, named after it
    assert len(checkpoints) == 2 and any(name.startswith("epoch") and "val_error" in name for name in checkpoints)
    with open(run / "metrics.csv") as rows:
        logged = list(csv.DictReader(rows))
    assert {"val/error", "test/error", "train/loss"} <= set(logged[0])
    val_errors = [float(row["val/error"]) for row in logged if row.get("val/error")]
    adapter = json.loads((run / "adapter" / "config.json").read_text())
    assert adapter["spec"]["task"] == "toy_brightness" and adapter["extra"]["monitor"] == "val/error"
    assert adapter["extra"]["best_score"] == pytest.approx(min(val_errors))  # mode "min": the lowest error won
