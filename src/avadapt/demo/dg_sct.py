"""``avadapt demo --method dg_sct``: DG-SCT on the synthetic AVE end to end on a CPU in minutes, nothing downloaded.

DG-SCT adapts two frozen encoders, a visual one and an HTS-AT audio encoder with its own log-mel front end, and
localises events with the CMBS head. Here both encoders are tiny and random:

1. synthesise the AVE demo's clips (``avadapt.demo.ave``: the same generator and sizes);
2. decode them once into a cache, with HTS-AT's log-mel shrunk for the CPU (16 mel × 26 frames a second);
3. train DG-SCT (adapters + CMBS head) on timm's ``test_vit`` beside ``htsat_tiny``, selecting on val and
   testing once;
4. train the probe on the same two frozen encoders with the same CMBS head (head only): what the adapters add;
5. predict one test clip from the exported adapter directory, which rebuilds both encoders from their files.

Writes ``OUT/metrics.json`` and ``OUT/prediction.png`` (+ ``prediction.json``), the data, cache, runs, adapter
directories and the two random encoders' files beside them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors.torch import save_file
from torch import nn

from avadapt.data.datamodule import AVDataModule
from avadapt.demo.ave import predict_test_clip
from avadapt.demo.common import banner as _banner
from avadapt.demo.common import fit_and_test, intra_op_threads, introduce, save_backbone
from avadapt.tasks.ave.prepare import prepare_ave
from avadapt.tasks.ave.synth import synthesize_ave
from avadapt.training.module import AVAdaptModule
from avadapt.training.precision import default_precision

REAL_WEIGHTS_HINT = """\
With real weights (not downloadable here), train DG-SCT on the real AVE with the paper's encoders instead:
Swin-V2-L beside HTS-AT's AudioSet checkpoint (--model.audio_backbone htsat --model.audio_weights
HTSAT_AudioSet_Saved_1.ckpt) and the htsat audio front end. See docs/training.md."""

# The CMBS head's widths narrowed to the 64-wide visual and 128-wide audio encoder (DG-SCT: 512 / 128 / 256 on
# Swin-V2-L's 1536 and HTS-AT's 768), as configs/ave/tiny_cpu_cmbs.yaml does.
TINY_CMBS = {"head": "cmbs", "video_projection_dim": 64, "audio_projection_dim": 32, "temporal_dim": 64}


@dataclass
class DGSCTDemoConfig:
    """Sizes of the DG-SCT demo; the defaults keep it within ten minutes on two CPU cores at one thread.

    The clips are the AVE demo's (``avadapt.demo.ave.DemoConfig``): events visible and audible, background
    seconds often carrying a class in one modality only, so accuracy rewards fusing the streams over time.
    """

    clips: int = 320
    num_classes: int = 16
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0
    video_size: int = 64
    image_size: int = 48  # test_vit: 16-pixel patches, 3 × 3 tokens
    backbone: str = "test_vit"
    audio_backbone: str = "htsat_tiny"  # HTS-AT's fold and Swin layout, 16 wide (avadapt.backbones.htsat)
    # HTS-AT's log-mel shrunk for the CPU: 16 mel bins every 40 ms, 26 frames a second (folded into a 64 × 64
    # image, 16 × 16 patches). The synthetic audio is 16 kHz, so the mel filters stop at its Nyquist frequency.
    fbank: dict[str, Any] = field(default_factory=lambda: {
        "num_mel_bins": 16, "frame_shift_ms": 40.0, "target_frames": 26, "high_freq": 8000.0})
    head: dict[str, Any] = field(default_factory=lambda: dict(TINY_CMBS))
    # Rates and epochs chosen on val (docs/training.md, "The CPU demo"); the epochs are what ten minutes allow.
    epochs: int = 8
    batch_size: int = 4
    lr: float = 3e-4  # DG-SCT's adapters
    head_lr: float = 1e-3  # DG-SCT's CMBS head
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    probe_epochs: int = 10
    probe_lr: float = 1e-3
    threads: int = 1


@dataclass
class DGSCTDemoData:
    """What both runs train on: the synthetic AVE, its cache, and the two random frozen encoders' files."""

    root: Path
    cache: Path
    weights: Path
    audio_weights: Path


def save_audio_encoder(encoder: nn.Module, out: Path) -> Path:
    """Write a (random) HTS-AT encoder to ``out/random_audio_encoder.safetensors`` in HTS-AT's checkpoint layout,
    the one ``load_htsat_weights`` reads, so that both runs and the exported adapter use the same encoder."""
    path = out / "random_audio_encoder.safetensors"
    save_file(encoder.checkpoint_state(), str(path))
    return path


@torch.no_grad()
def set_mel_statistics(encoder: nn.Module, datamodule: AVDataModule) -> None:
    """Give the random encoder's ``bn0`` the train split's mean and variance of every mel bin, the statistics a
    trained HTS-AT's ``bn0`` holds of AudioSet: the log-mel is in dB with no normalisation of its own (the
    ``htsat`` front end leaves that to ``bn0``), so with bn0's initial 0 / 1 every patch would be dominated by
    the spectrogram's offset of tens of dB."""
    datamodule.setup("fit")
    total = squares = count = 0
    for batch in datamodule.train_dataloader():
        mel = batch.audio.flatten(0, 2).transpose(1, 2).flatten(0, 1).double()  # (B, T, 1, F, L) → (B*T*L, F)
        total, squares, count = total + mel.sum(0), squares + mel.square().sum(0), count + len(mel)
    mean = total / count
    encoder.bn0.running_mean.copy_(mean)
    encoder.bn0.running_var.copy_(squares / count - mean.square())


def build_module(cfg: DGSCTDemoConfig, method: str, data: DGSCTDemoData | None = None, **training: Any
                 ) -> AVAdaptModule:
    """DG-SCT or the probe on the demo's two encoders (random until ``data`` gives their files), CMBS head."""
    return AVAdaptModule(
        backbone=cfg.backbone, method=method, task_options={"num_classes": cfg.num_classes + 1, **cfg.head},
        backbone_options={"img_size": cfg.image_size}, audio_front_end="htsat", fbank=cfg.fbank,
        audio_backbone=cfg.audio_backbone, weights=str(data.weights) if data else None,
        audio_weights=str(data.audio_weights) if data else None, **training)


def build_data(out: Path, cfg: DGSCTDemoConfig) -> DGSCTDemoData:
    """Steps 1 and 2: synthesise the clips (reused when there), decode them once with the HTS-AT front end, write
    the two random encoders."""
    _banner(f"1/5 synthesising {cfg.clips} clips of 10 s ({cfg.num_classes} event classes + background)")
    data_root = out / "ave"
    if not (data_root / "Annotations.txt").is_file():
        summary = synthesize_ave(data_root, clips=cfg.clips, seed=cfg.seed, num_classes=cfg.num_classes,
                                 size=cfg.video_size, split_fractions=(cfg.val_fraction, cfg.test_fraction))
        print(f"wrote {summary.rows} clips (splits {summary.splits}) in {summary.seconds:.1f} s", flush=True)
    else:
        print(f"reusing {data_root}", flush=True)

    _banner("2/5 decoding every clip once (frames + HTS-AT log-mel cache)")
    cache = out / "cache"
    torch.manual_seed(cfg.seed)
    module = build_module(cfg, "probe")
    video_config = module.preprocessing["video"]
    prepare_ave(data_root, cache, workers=1, image_size=cfg.image_size, fbank=module.fbank,
                crop_pct=video_config.get("crop_pct") or 1.0, interpolation=video_config["interpolation"])
    datamodule = AVDataModule(str(data_root), dataset="ave", cache_dir=str(cache), batch_size=16, num_workers=0,
                              preprocessing=module.preprocessing)
    set_mel_statistics(module.model.audio_backbone, datamodule)
    weights = save_backbone(module, out)
    audio_weights = save_audio_encoder(module.model.audio_backbone, out)
    return DGSCTDemoData(data_root, cache, weights, audio_weights)


def train_method(method: str, cfg: DGSCTDemoConfig, data: DGSCTDemoData, out: Path, precision: str,
                 lr: float | None = None, head_lr: float | None = None, epochs: int | None = None,
                 test: bool = True) -> dict[str, Any]:
    """Fit DG-SCT or the probe on the demo's data and encoders, selecting on val; test the best val checkpoint
    once (``test=False``: val only, for choosing settings). ``lr`` (adapters; the probe's head), ``head_lr``
    (DG-SCT's head) and ``epochs`` replace the config's."""
    L.seed_everything(cfg.seed, verbose=False)
    probe = method == "probe"
    lr = lr if lr is not None else (cfg.probe_lr if probe else cfg.lr)
    head_lr = lr if probe else head_lr if head_lr is not None else cfg.head_lr
    epochs = epochs if epochs is not None else (cfg.probe_epochs if probe else cfg.epochs)
    module = build_module(cfg, method, data, lr=lr, min_lr=min(cfg.min_lr, lr), head_lr_factor=head_lr / lr,
                          warmup_epochs=cfg.warmup_epochs)
    datamodule = AVDataModule(str(data.root), dataset="ave", cache_dir=str(data.cache), batch_size=cfg.batch_size,
                              num_workers=0, preprocessing=module.preprocessing)
    return fit_and_test(module, datamodule, out, epochs, precision, test=test)


def run_demo(out: str | Path = "demo_dg_sct", precision: str | None = None, config: DGSCTDemoConfig | None = None
             ) -> dict[str, Any]:
    """Run the five steps above; returns (and writes to ``OUT/metrics.json``) the numbers."""
    cfg = config or DGSCTDemoConfig()
    with intra_op_threads(cfg.threads):
        return _run(Path(out), precision, cfg)


def _run(out: Path, precision: str | None, cfg: DGSCTDemoConfig) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    precision = precision or default_precision()
    started = time.perf_counter()
    introduce("avadapt demo --method dg_sct", out, cfg.backbone, REAL_WEIGHTS_HINT)
    print(f"NOTE: the audio encoder (HTS-AT's layout, '{cfg.audio_backbone}') is RANDOMLY INITIALISED too.", flush=True)

    data = build_data(out, cfg)

    _banner("3/5 training DG-SCT (adapters + CMBS head; model selection on val, then one test)")
    dg_sct = train_method("dg_sct", cfg, data, out / "runs" / "dg_sct", precision)
    print(f"DG-SCT: test accuracy {dg_sct['test_accuracy']:.3f} (best val {dg_sct['best_val_accuracy']:.3f}) "
          f"after {dg_sct['train_seconds']:.0f} s of training", flush=True)

    _banner("4/5 training the probe on the same frozen encoders and CMBS head (head only) for comparison")
    probe = train_method("probe", cfg, data, out / "runs" / "probe", precision)
    print(f"probe: test accuracy {probe['test_accuracy']:.3f} (best val {probe['best_val_accuracy']:.3f})", flush=True)

    _banner("5/5 predicting one test clip from the exported adapter")
    result = predict_test_clip(dg_sct["adapter"], data.root, out / "prediction")  # both encoders' files

    random = "random initialisation: no pretrained weights available here"
    metrics = {
        "test_accuracy": dg_sct["test_accuracy"],
        "probe_test_accuracy": probe["test_accuracy"],
        "val_accuracy": dg_sct["best_val_accuracy"],
        "probe_val_accuracy": probe["best_val_accuracy"],
        "train_seconds": dg_sct["train_seconds"],
        "probe_train_seconds": probe["train_seconds"],
        "total_seconds": round(time.perf_counter() - started, 1),
        "trainable_parameters": dg_sct["trainable_parameters"],
        "probe_trainable_parameters": probe["trainable_parameters"],
        "total_parameters": dg_sct["total_parameters"],
        "metric": "segment accuracy: correct 1 s segments / all segments of the split (AVE's metric)",
        "precision": precision,
        "backbone": f"{cfg.backbone} ({random})",
        "audio_backbone": f"{cfg.audio_backbone} ({random})",
        "head": "cmbs",
        "adapter": dg_sct["adapter"],
        "curves": {"dg_sct": dg_sct["curves"], "probe": probe["curves"]},
        "prediction": {"video": str(result["video"]), "accuracy": result["accuracy"], "png": result["png"]},
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _banner(f"done in {metrics['total_seconds']:.0f} s: DG-SCT test accuracy {metrics['test_accuracy']:.3f} vs "
            f"probe {metrics['probe_test_accuracy']:.3f} → {out / 'metrics.json'}, {result['png']}")
    return metrics
