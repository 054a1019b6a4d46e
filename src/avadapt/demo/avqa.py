"""``avadapt demo --task avqa``: audio-visual question answering end to end on a CPU, nothing downloaded.

1. synthesise a small MUSIC-AVQA (real mp4 performances and questions from the real templates, in the released
   json format; audio questions need the sound, visual ones the picture);
2. decode every video once into a cache (with the question vocabulary of the training questions);
3. train STG-CMA with the AVST head on a tiny, randomly initialised ViT, selecting on val accuracy, testing once;
4. train the frozen-backbone probe (head only) on the same data and backbone, for comparison;
5. ask the exported adapter one test question about its video and draw where it looked.

Writes ``OUT/metrics.json`` (accuracy overall, per question type and per modality group) and
``OUT/prediction.png`` (+ ``prediction.json``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from avadapt.data.datamodule import AVDataModule
from avadapt.demo.common import banner, fit_and_test, intra_op_threads, introduce, save_backbone
from avadapt.io import load_adapter
from avadapt.tasks.avqa.dataset import QUESTION_TYPE_NAMES, TYPE_GROUPS, read_avqa_json
from avadapt.tasks.avqa.prepare import prepare_avqa
from avadapt.tasks.avqa.synth import synthesize_avqa
from avadapt.training.ask import ask
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision

REAL_WEIGHTS_HINT = """\
With real weights (not downloadable here), train the paper's rows on the real MUSIC-AVQA instead, e.g.
  avadapt prepare avqa --root MUSIC_AVQA --media-root MUSIC_AVQA_VIDEOS --out AVQA_CACHE --image-size 224 \\
      --audio-front-end stg_cma_swin_avqa --workers 8
  avadapt fit --config configs/avqa/stg_cma_swin_l.yaml --data.root MUSIC_AVQA --data.cache_dir AVQA_CACHE \\
      --model.weights /path/to/swin_large_patch4_window7_224_22k.safetensors
See docs/tasks.md."""


@dataclass
class AVQADemoConfig:
    """Sizes of the AVQA demo; the defaults keep it within a few minutes on two CPU cores."""

    clips: int = 150
    questions_per_clip: int = 16
    seed: int = 0
    video_size: int = 64
    image_size: int = 64
    num_mel_bins: int = 64
    target_frames: int = 48
    backbone: str = "test_vit"
    depth: int = 2  # of test_vit's 6 blocks
    ratio: str = "1/4"
    epochs: int = 30
    batch_size: int = 32  # questions: two videos with all their questions, each video encoded once
    items_per_clip: int = 16
    # rates chosen on val accuracy (docs/tasks.md)
    lr: float = 1e-4
    head_lr_factor: float = 10.0  # the head at 1e-3, as the probe's
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    probe_lr: float = 1e-3
    threads: int = 1


@dataclass
class AVQADemoData:
    root: Path
    cache: Path
    weights: Path


def _module(cfg: AVQADemoConfig, method: str, data_root: Path, weights: str | None, lr: float,
            method_options: dict[str, Any]) -> AVAdaptModule:
    return AVAdaptModule(
        backbone=cfg.backbone, method=method, task="avqa", method_options=method_options,
        task_options={"question_vocab": str(data_root)},  # built from avqa-train.json, saved with the adapter
        backbone_options={"img_size": cfg.image_size, "depth": cfg.depth}, weights=weights, audio_front_end="vit",
        fbank={"num_mel_bins": cfg.num_mel_bins, "target_frames": cfg.target_frames},
        lr=lr, min_lr=cfg.min_lr, head_lr_factor=cfg.head_lr_factor if method != "probe" else 1.0,
        warmup_epochs=cfg.warmup_epochs,
    )


def build_data(out: Path, cfg: AVQADemoConfig) -> AVQADemoData:
    """Steps 1 and 2, and the random backbone every run shares (written to a file that ``ask`` reloads)."""
    banner(f"1/5 synthesising {cfg.clips} performances of 10 s with {cfg.questions_per_clip} questions each")
    root = out / "avqa"
    if not (root / "avqa-train.json").is_file():
        print(synthesize_avqa(root, clips=cfg.clips, seed=cfg.seed, size=cfg.video_size,
                              questions_per_clip=cfg.questions_per_clip), flush=True)
    else:
        print(f"reusing {root}", flush=True)
    banner("2/5 decoding every video once (frames + fbank cache)")
    torch.manual_seed(cfg.seed)
    probe = _module(cfg, "probe", root, None, cfg.probe_lr, {})
    video_config = probe.preprocessing["video"]
    cache = out / "cache"
    prepare_avqa(root, cache, workers=1, image_size=cfg.image_size, fbank=probe.fbank,
                 crop_pct=video_config.get("crop_pct") or 1.0, interpolation=video_config["interpolation"])
    weights = save_backbone(probe, out)
    return AVQADemoData(root, cache, weights)


def initial_head(cfg: AVQADemoConfig, data: AVQADemoData) -> dict[str, torch.Tensor]:
    """The AVST head's starting weights, the same for every method: the comparison then differs only in what
    the method adds (a head drawn after a method's own modules would start elsewhere, and on so small a set the
    start alone moves the accuracy by several points)."""
    L.seed_everything(cfg.seed, verbose=False)
    probe = _module(cfg, "probe", data.root, str(data.weights), cfg.probe_lr, {})
    return probe.model.head.state_dict()


def train_method(method: str, cfg: AVQADemoConfig, data: AVQADemoData, out: Path, precision: str,
                 method_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit one method on the demo's data and backbone, selecting on val accuracy; test the best checkpoint once."""
    L.seed_everything(cfg.seed, verbose=False)
    options = {"ratio": cfg.ratio, "drop_path": 0.0} if method == "stg_cma" else {}
    lr = cfg.lr if method != "probe" else cfg.probe_lr
    module = _module(cfg, method, data.root, str(data.weights), lr, {**options, **(method_options or {})})
    module.model.head.load_state_dict(initial_head(cfg, data))  # every method starts from the same head
    datamodule = AVDataModule(str(data.root), dataset="music_avqa", cache_dir=str(data.cache),
                              batch_size=cfg.batch_size, items_per_clip=cfg.items_per_clip, num_workers=0,
                              preprocessing=module.preprocessing)
    result = fit_and_test(module, datamodule, out / "runs" / method, cfg.epochs, precision)
    print(f"{method}: test accuracy {result['test_accuracy']:.3f} (best val {result['best_val_accuracy']:.3f}) "
          f"after {result['train_seconds']:.0f} s", flush=True)
    return result


def by_type(result: dict[str, Any]) -> dict[str, float]:
    """The test accuracies per question type and per modality group from a run's ``test_*`` figures."""
    names = [f"type/{name}" for name in QUESTION_TYPE_NAMES] + [*TYPE_GROUPS, "accuracy"]
    return {name.replace("type/", ""): result[f"test_{name.replace('/', '_')}"] for name in names
            if f"test_{name.replace('/', '_')}" in result}


def run_demo(out: str | Path = "demo_out", precision: str | None = None, config: AVQADemoConfig | None = None
             ) -> dict[str, Any]:
    """Run the five steps above; returns (and writes to ``OUT/metrics.json``) the numbers."""
    cfg = config or AVQADemoConfig()
    with intra_op_threads(cfg.threads):
        return _run(Path(out), precision, cfg)


def _run(out: Path, precision: str | None, cfg: AVQADemoConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    precision = precision or default_precision()
    started = time.perf_counter()
    introduce("avadapt demo --task avqa", out, cfg.backbone, REAL_WEIGHTS_HINT)
    data = build_data(out, cfg)
    banner("3/5 training STG-CMA with the AVST head (selection on val accuracy, then one test)")
    stg_cma = train_method("stg_cma", cfg, data, out, precision)
    banner("4/5 training the frozen-backbone probe (head only) for comparison")
    probe = train_method("probe", cfg, data, out, precision)

    banner("5/5 asking the exported adapter a test question")
    question = read_avqa_json(data.root / "avqa-test.json")[0]
    model = load_adapter(stg_cma["adapter"])
    answer = ask(model, data.root / f"{question.video_id}.mp4", question.text, out=out / "prediction")
    print(f"{question.video_id}: {question.text} → {answer['answers'][0]['answer']} "
          f"({answer['answers'][0]['probability']:.2f}); annotated: {question.answer}", flush=True)

    metrics = {
        "test_accuracy": stg_cma["test_accuracy"],
        "probe_test_accuracy": probe["test_accuracy"],
        "test_accuracy_by_type": by_type(stg_cma),
        "probe_test_accuracy_by_type": by_type(probe),
        "val_accuracy": stg_cma["best_val_accuracy"],
        "probe_val_accuracy": probe["best_val_accuracy"],
        "train_seconds": stg_cma["train_seconds"],
        "probe_train_seconds": probe["train_seconds"],
        "total_seconds": round(time.perf_counter() - started, 1),
        "trainable_parameters": stg_cma["trainable_parameters"],
        "probe_trainable_parameters": probe["trainable_parameters"],
        "total_parameters": stg_cma["total_parameters"],
        "metric": "top-1 answer accuracy over the test questions; groups pool their types' questions",
        "precision": precision,
        "backbone": f"{cfg.backbone} (random initialisation: no pretrained weights available here)",
        "adapter": stg_cma["adapter"],
        "curves": {"stg_cma": stg_cma["curves"], "probe": probe["curves"]},
        "prediction": {"video": answer["video"], "question": question.text, "annotated": question.answer,
                       "answers": answer["answers"], "png": answer["png"]},
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    banner(f"done in {metrics['total_seconds']:.0f} s: STG-CMA test accuracy {metrics['test_accuracy']:.3f} vs "
           f"probe {metrics['probe_test_accuracy']:.3f} → {out / 'metrics.json'}, {answer['png']}")
    return metrics


__all__ = ["AVQADemoConfig", "build_data", "run_demo", "train_method"]
