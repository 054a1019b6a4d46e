"""``avadapt demo --task avs``: audio-visual segmentation end to end on a CPU in minutes, nothing downloaded.

1. synthesise a small AVSBench S4 (real PNG frames, masks and wav files; every clip shows several objects and
   only the one whose sound plays is in the mask, so the picture alone cannot say which to segment);
2. decode it once into a cache;
3. train STG-CMA on a tiny, randomly initialised ViT, selecting on val mIoU and testing once;
4. train its visual-only branch (the same model without the audio stream) and the frozen-backbone probe on the
   same data and backbone, for comparison;
5. predict one test clip (assembled into an mp4) from the exported adapter and draw its masks over the frames.

Writes ``OUT/metrics.json`` and ``OUT/prediction.png`` (+ ``prediction.json`` and ``prediction_masks/``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image

from avadapt.data.datamodule import AVDataModule
from avadapt.data.media import read_audio, write_mp4
from avadapt.demo.common import banner, fit_and_test, intra_op_threads, introduce, save_backbone
from avadapt.io import load_adapter
from avadapt.tasks.avs.dataset import AVSMedia, metadata_path, read_s4_metadata
from avadapt.tasks.avs.prepare import prepare_avs
from avadapt.tasks.avs.synth import synthesize_avs
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision
from avadapt.training.predict import predict_video, write_prediction

REAL_WEIGHTS_HINT = """\
With real weights (not downloadable here), train the paper's rows on the real AVSBench instead, e.g.
  avadapt prepare avs --setting s4 --root AVSBENCH/Single-source --out S4_CACHE --image-size 224 \\
      --audio-front-end stg_cma_swin_avs --workers 8
  avadapt fit --config configs/avs/stg_cma_swin_l_s4.yaml --data.root AVSBENCH/Single-source \\
      --data.cache_dir S4_CACHE --model.weights /path/to/swin_large_patch4_window7_224_22k.safetensors
See docs/training.md."""


@dataclass
class AVSDemoConfig:
    """Sizes of the AVS demo; the defaults keep it within a few minutes on two CPU cores.

    The backbone is timm's ``test_vit`` (16-pixel patches: a 64-pixel frame is a 4 × 4 token grid, which the
    decoder's pyramid upsamples); the decoder is the AVSBench decoder at a small width.
    """

    clips: int = 160
    num_classes: int = 4
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0
    video_size: int = 64
    image_size: int = 64
    patch_size: int = 16
    num_mel_bins: int = 64
    target_frames: int = 48
    backbone: str = "test_vit"
    ratio: str = "1/4"
    projection_dims: tuple[int, ...] = (16, 16, 32, 32)
    decoder_dim: int = 32
    audio_dim: int = 32
    epochs: int = 12
    batch_size: int = 4
    # Rates chosen on val mIoU (docs/tasks.md): the decoder learns best at 3e-3, the adapters at 3e-4.
    lr: float = 3e-4
    head_lr_factor: float = 10.0
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    probe_lr: float = 3e-3
    threads: int = 1


@dataclass
class AVSDemoData:
    root: Path
    cache: Path
    weights: Path


def _module(cfg: AVSDemoConfig, method: str, weights: str | None, lr: float, method_options: dict[str, Any]
            ) -> AVAdaptModule:
    visual_only = method_options.get("branches") == "visual_only"
    return AVAdaptModule(
        backbone=cfg.backbone, method=method, task="avs", method_options={"num_frames": 5, **method_options},
        task_options={"projection_dims": list(cfg.projection_dims), "decoder_dim": cfg.decoder_dim,
                      "audio_dim": cfg.audio_dim, **({"tpavi_stages": []} if visual_only else {})},
        backbone_options={"img_size": cfg.image_size, "patch_size": cfg.patch_size}, weights=weights,
        audio_front_end="vit", fbank={"num_mel_bins": cfg.num_mel_bins, "target_frames": cfg.target_frames},
        lr=lr, min_lr=cfg.min_lr, head_lr_factor=cfg.head_lr_factor if method != "probe" else 1.0,
        warmup_epochs=cfg.warmup_epochs,
    )


def build_data(out: Path, cfg: AVSDemoConfig) -> AVSDemoData:
    """Steps 1 and 2, and the random backbone every run shares (written to a file that prediction reloads)."""
    banner(f"1/5 synthesising {cfg.clips} S4 clips of 5 s ({cfg.num_classes} object categories)")
    root = out / "avs"
    if not (root / "s4_meta_data.csv").is_file():
        summary = synthesize_avs(root, clips=cfg.clips, seed=cfg.seed, setting="s4", num_classes=cfg.num_classes,
                                 size=cfg.video_size, split_fractions=(cfg.val_fraction, cfg.test_fraction))
        print(summary, flush=True)
    else:
        print(f"reusing {root}", flush=True)

    banner("2/5 decoding every clip once (frames + fbank + masks cache)")
    torch.manual_seed(cfg.seed)
    probe = _module(cfg, "probe", None, cfg.probe_lr, {})
    video_config = probe.preprocessing["video"]
    cache = out / "cache"
    prepare_avs(root, cache, setting="s4", workers=1, image_size=cfg.image_size, fbank=probe.fbank,
                crop_pct=video_config.get("crop_pct") or 1.0, interpolation=video_config["interpolation"])
    weights = save_backbone(probe, out)
    return AVSDemoData(root, cache, weights)


def train_method(name: str, method: str, cfg: AVSDemoConfig, data: AVSDemoData, out: Path, precision: str,
                 method_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit one model on the demo's data and backbone, selecting on val mIoU; test the best checkpoint once."""
    L.seed_everything(cfg.seed, verbose=False)
    options = {"ratio": cfg.ratio, "drop_path": 0.0} if method == "stg_cma" else {}
    lr = cfg.lr if method != "probe" else cfg.probe_lr
    module = _module(cfg, method, str(data.weights), lr, {**options, **(method_options or {})})
    datamodule = AVDataModule(str(data.root), dataset="avs_s4", cache_dir=str(data.cache),
                              batch_size=cfg.batch_size, num_workers=0, preprocessing=module.preprocessing)
    result = fit_and_test(module, datamodule, out / "runs" / name, cfg.epochs, precision, name=name)
    print(f"{name}: test mIoU {result['test_miou']:.3f}, F {result['test_fscore']:.3f} "
          f"(best val mIoU {result['best_val_miou']:.3f}) after {result['train_seconds']:.0f} s", flush=True)
    return result


def clip_as_video(media: AVSMedia, out: Path) -> Path:
    """A clip's five frames and its wav as one mp4 (each frame shown for its second), for ``predict``."""
    frames = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in media.frames])  # (5, H, W, 3)
    wave = read_audio(media.wav, 16000)
    return write_mp4(out, np.repeat(frames, 2, axis=0), fps=2, audio=wave, sample_rate=16000)


def run_demo(out: str | Path = "demo_out", precision: str | None = None, config: AVSDemoConfig | None = None
             ) -> dict[str, Any]:
    """Run the five steps above; returns (and writes to ``OUT/metrics.json``) the numbers."""
    cfg = config or AVSDemoConfig()
    with intra_op_threads(cfg.threads):
        return _run(Path(out), precision, cfg)


def _run(out: Path, precision: str | None, cfg: AVSDemoConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    precision = precision or default_precision()
    started = time.perf_counter()
    introduce("avadapt demo --task avs", out, cfg.backbone, REAL_WEIGHTS_HINT)
    data = build_data(out, cfg)

    banner("3/5 training STG-CMA (adapters + AVSBench decoder; selection on val mIoU, then one test)")
    stg_cma = train_method("stg_cma", "stg_cma", cfg, data, out, precision)
    banner("4/5 training its visual-only branch and the frozen-backbone probe for comparison")
    visual_only = train_method("stg_cma_visual_only", "stg_cma", cfg, data, out, precision,
                               {"branches": "visual_only"})
    probe = train_method("probe", "probe", cfg, data, out, precision)

    banner("5/5 predicting one test clip from the exported adapter")
    clip = next(c for c in read_s4_metadata(metadata_path(data.root, "s4")) if c.split == "test")
    media = AVSMedia.of(data.root, "s4", clip)
    video = clip_as_video(media, out / "prediction_input.mp4")
    model = load_adapter(stg_cma["adapter"])
    result = write_prediction(model, predict_video(model, video), out / "prediction",
                              ground_truth=str(media.masks[0].parent))
    print(f"{clip.name}: {result['summary']}\n{result.get('agreement', '')}", flush=True)

    metrics = {
        "test_miou": stg_cma["test_miou"],
        "test_fscore": stg_cma["test_fscore"],
        "visual_only_test_miou": visual_only["test_miou"],
        "visual_only_test_fscore": visual_only["test_fscore"],
        "probe_test_miou": probe["test_miou"],
        "probe_test_fscore": probe["test_fscore"],
        "val_miou": stg_cma["best_val_miou"],
        "visual_only_val_miou": visual_only["best_val_miou"],
        "probe_val_miou": probe["best_val_miou"],
        "train_seconds": stg_cma["train_seconds"],
        "visual_only_train_seconds": visual_only["train_seconds"],
        "probe_train_seconds": probe["train_seconds"],
        "total_seconds": round(time.perf_counter() - started, 1),
        "trainable_parameters": stg_cma["trainable_parameters"],
        "visual_only_trainable_parameters": visual_only["trainable_parameters"],
        "probe_trainable_parameters": probe["trainable_parameters"],
        "total_parameters": stg_cma["total_parameters"],
        "metric": "mIoU: mean IoU over the annotated test frames (threshold 0.5; an empty mask scores its true-"
                  "negative ratio); F: β² = 0.3, max over 255 thresholds of the mean F curve (AVSBench's)",
        "precision": precision,
        "backbone": f"{cfg.backbone} (random initialisation: no pretrained weights available here)",
        "adapter": stg_cma["adapter"],
        "curves": {"stg_cma": stg_cma["curves"], "stg_cma_visual_only": visual_only["curves"],
                   "probe": probe["curves"]},
        "prediction": {"video": str(video), "png": result["png"], "agreement": result.get("agreement")},
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    banner(f"done in {metrics['total_seconds']:.0f} s: STG-CMA test mIoU {metrics['test_miou']:.3f} vs visual-only "
           f"{metrics['visual_only_test_miou']:.3f} vs probe {metrics['probe_test_miou']:.3f} → "
           f"{out / 'metrics.json'}, {result['png']}")
    return metrics


__all__ = ["AVSDemoConfig", "build_data", "run_demo", "train_method"]
