"""``avadapt demo --task ave``: event localisation end to end on a CPU in a few minutes, nothing downloaded.

1. synthesise a small AVE (real mp4 files, events that need both sound and picture to localise);
2. decode it once into a cache;
3. train STG-CMA on a tiny, randomly initialised ViT, selecting on val and testing once on test;
4. train the frozen-backbone probe (head only) on the same data and backbone, for comparison;
5. predict one test clip from the exported adapter directory and draw its timeline.

Writes ``OUT/metrics.json`` and ``OUT/prediction.png`` (+ ``prediction.json``), the data, cache, runs and
adapter directories beside them; each run's training curves are ``OUT/runs/<method>/curves.png``.
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
from avadapt.demo.common import banner as _banner
from avadapt.demo.common import fit_and_test, intra_op_threads, introduce, save_backbone
from avadapt.io import load_adapter
from avadapt.tasks.ave.dataset import AVEAnnotations
from avadapt.tasks.ave.prepare import prepare_ave
from avadapt.tasks.ave.synth import synthesize_ave
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision
from avadapt.training.predict import predict_video, write_prediction

REAL_WEIGHTS_HINT = """\
With real weights (not downloadable here), train the paper's rows on the real AVE instead, e.g.
  avadapt prepare ave --root AVE_ROOT --out AVE_CACHE --image-size 224 --workers 8
  avadapt fit --config configs/ave/clip_vit_b16_tiny.yaml --data.root AVE_ROOT --data.cache_dir AVE_CACHE \\
      --model.weights /path/to/clip_vit_b16.safetensors     (or --model.pretrained true where timm can fetch)
See docs/training.md."""


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults keep it to a few minutes on two CPU cores.

    The synthetic events are visible AND audible, while background seconds often carry the same class in one
    modality only (see ``avadapt.tasks.ave.synth``), so accuracy rewards fusing the two streams over time.
    """

    clips: int = 320
    # Sixteen classes: with four, a head on the random frozen features already tells the classes apart and
    # the comparison only measures noise; with many, telling them apart needs adapted features.
    num_classes: int = 16
    val_fraction: float = 0.15
    test_fraction: float = 0.25  # a larger test split than AVE's, so the comparison is not decided by noise
    seed: int = 0
    video_size: int = 64  # pixels of the synthetic mp4 frames
    image_size: int = 48  # model input (test_vit has 16-pixel patches: 3 × 3 tokens)
    num_mel_bins: int = 64
    target_frames: int = 48  # fbank frames per 1 s segment (10 ms hop, cut from ~98)
    backbone: str = "test_vit"
    preset: str | None = None
    ratio: str | None = "1/4"  # bottleneck width 16 of test_vit's 64 channels (the presets give 2–8)
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    min_lr: float = 1e-5
    head_lr_factor: float = 1.0
    warmup_epochs: float = 1.0
    probe_lr: float = 1e-3
    # The demo's tensors are tiny: one intra-op thread avoids synchronisation cost that dominates (and
    # explodes on a busy machine) with more threads.
    threads: int = 1


@dataclass
class DemoData:
    """What every run of the demo trains on: the synthetic AVE, its decoded cache, the random backbone's file."""

    root: Path
    cache: Path
    weights: Path


def build_data(out: Path, cfg: DemoConfig) -> DemoData:
    """Steps 1 and 2: synthesise the clips (reused when there), decode them once, write the random backbone.

    The same ``cfg`` gives the same clips and the same backbone, so other methods can be compared on them.
    """
    _banner(f"1/5 synthesising {cfg.clips} clips of 10 s ({cfg.num_classes} event classes + background)")
    data_root = out / "ave"
    if not (data_root / "Annotations.txt").is_file():
        summary = synthesize_ave(data_root, clips=cfg.clips, seed=cfg.seed, num_classes=cfg.num_classes,
                                 size=cfg.video_size, split_fractions=(cfg.val_fraction, cfg.test_fraction))
        print(f"wrote {summary.rows} clips (splits {summary.splits}) in {summary.seconds:.1f} s", flush=True)
    else:
        print(f"reusing {data_root}", flush=True)

    _banner("2/5 decoding every clip once (frames + fbank cache)")
    cache = out / "cache"
    torch.manual_seed(cfg.seed)
    probe_model = AVAdaptModule(backbone=cfg.backbone, method="probe", backbone_options={"img_size": cfg.image_size},
                                task_options={"num_classes": cfg.num_classes + 1},
                                fbank={"num_mel_bins": cfg.num_mel_bins, "target_frames": cfg.target_frames})
    video_config = probe_model.preprocessing["video"]
    prepare_ave(data_root, cache, workers=1, image_size=cfg.image_size, fbank=probe_model.fbank,
                crop_pct=video_config.get("crop_pct") or 1.0, interpolation=video_config["interpolation"])

    weights = save_backbone(probe_model, out)
    return DemoData(data_root, cache, weights)


def train_method(method: str, cfg: DemoConfig, data: DemoData, out: Path, precision: str,
                 method_options: dict[str, Any] | None = None, test: bool = True) -> dict[str, Any]:
    """Fit one method on the demo's data and backbone, selecting on val; test the best val checkpoint once
    (``test=False``: val only, for choosing settings). ``method_options`` add to the demo's own (STG-CMA's
    bottleneck and drop path)."""
    L.seed_everything(cfg.seed, verbose=False)
    lr = cfg.lr if method != "probe" else cfg.probe_lr
    bottleneck = {"ratio": cfg.ratio} if cfg.ratio is not None else {"preset": cfg.preset}
    options = {**bottleneck, "drop_path": 0.0} if method == "stg_cma" else {}
    module = AVAdaptModule(
        backbone=cfg.backbone, method=method, method_options={**options, **(method_options or {})},
        task_options={"num_classes": cfg.num_classes + 1}, backbone_options={"img_size": cfg.image_size},
        weights=str(data.weights), fbank={"num_mel_bins": cfg.num_mel_bins, "target_frames": cfg.target_frames},
        lr=lr, min_lr=cfg.min_lr, head_lr_factor=cfg.head_lr_factor, warmup_epochs=cfg.warmup_epochs,
    )
    datamodule = AVDataModule(str(data.root), dataset="ave", cache_dir=str(data.cache), batch_size=cfg.batch_size,
                              num_workers=0, preprocessing=module.preprocessing)
    return fit_and_test(module, datamodule, out, cfg.epochs, precision, test=test)


def predict_test_clip(adapter: str | Path, data_root: Path, out: Path) -> dict[str, Any]:
    """Predict, from an exported adapter directory (its frozen weights found through its config), the test clip
    whose event covers about half of it, so that both the event and background seconds show in the picture;
    write ``OUT.json`` / ``OUT.png`` against its annotation and print the agreement."""
    annotations = AVEAnnotations.load(data_root)
    test_events = [annotations.events[r] for r in annotations.rows("test")]
    event = min(test_events, key=lambda e: (abs(e.end - e.start - annotations.num_segments / 2), e.row))
    model = load_adapter(adapter)
    row = f"{event.category}&{event.video_id}&{event.quality}&{event.start}&{event.end}"
    result = write_prediction(model, predict_video(model, data_root / "AVE" / f"{event.video_id}.mp4"), out,
                              ground_truth=row)
    print(f"{event.video_id}: {result['summary']}\nannotated: {event.category} at {event.start}-{event.end} s; "
          f"agreement {result['accuracy']:.0%}", flush=True)
    return result


def run_demo(out: str | Path = "demo_out", precision: str | None = None, config: DemoConfig | None = None
             ) -> dict[str, Any]:
    """Run the five steps above; returns (and writes to ``OUT/metrics.json``) the numbers."""
    cfg = config or DemoConfig()
    with intra_op_threads(cfg.threads):
        return _run(Path(out), precision, cfg)


def _run(out: Path, precision: str | None, cfg: DemoConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    precision = precision or default_precision()
    started = time.perf_counter()
    introduce("avadapt demo", out, cfg.backbone, REAL_WEIGHTS_HINT)

    data = build_data(out, cfg)

    _banner("3/5 training STG-CMA (adapters + head; model selection on val, then one test)")
    stg_cma = train_method("stg_cma", cfg, data, out / "runs" / "stg_cma", precision)
    print(f"STG-CMA: test accuracy {stg_cma['test_accuracy']:.3f} (best val {stg_cma['best_val_accuracy']:.3f}) "
          f"after {stg_cma['train_seconds']:.0f} s of training", flush=True)

    _banner("4/5 training the frozen-backbone probe (head only) for comparison")
    probe = train_method("probe", cfg, data, out / "runs" / "probe", precision)
    print(f"probe: test accuracy {probe['test_accuracy']:.3f} (best val {probe['best_val_accuracy']:.3f})", flush=True)

    _banner("5/5 predicting one test clip from the exported adapter")
    result = predict_test_clip(stg_cma["adapter"], data.root, out / "prediction")  # random_backbone.safetensors

    metrics = {
        "test_accuracy": stg_cma["test_accuracy"],
        "probe_test_accuracy": probe["test_accuracy"],
        "val_accuracy": stg_cma["best_val_accuracy"],
        "probe_val_accuracy": probe["best_val_accuracy"],
        "train_seconds": stg_cma["train_seconds"],
        "probe_train_seconds": probe["train_seconds"],
        "total_seconds": round(time.perf_counter() - started, 1),
        "trainable_parameters": stg_cma["trainable_parameters"],
        "probe_trainable_parameters": probe["trainable_parameters"],
        "total_parameters": stg_cma["total_parameters"],
        "metric": "segment accuracy: correct 1 s segments / all segments of the split (AVE's metric)",
        "precision": precision,
        "backbone": f"{cfg.backbone} (random initialisation: no pretrained weights available here)",
        "adapter": stg_cma["adapter"],
        "curves": {"stg_cma": stg_cma["curves"], "probe": probe["curves"]},
        "prediction": {"video": str(result["video"]), "accuracy": result["accuracy"], "png": result["png"]},
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _banner(f"done in {metrics['total_seconds']:.0f} s: STG-CMA test accuracy {metrics['test_accuracy']:.3f} vs "
            f"probe {metrics['probe_test_accuracy']:.3f} → {out / 'metrics.json'}, {result['png']}")
    return metrics
