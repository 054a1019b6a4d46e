"""Prediction throughput: seconds of video predicted per second of wall time, and the fraction of this machine's
matmul peak it reaches, for one long video and for many short ones, at fp32 and bf16.

Random weights (the speed does not depend on them) and synthetic mp4 files (random blocks of colour and a tone)
written first; each video goes through ``avadapt.prediction.predict_video`` as ``avadapt predict`` runs it, the
decoding included. bf16 is autocast around the call (on a CPU only where it has native bf16 arithmetic). FLOPs
are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one window and multiplied by the windows each
video takes; the peak is a large matmul in the same dtype, measured before and after each run.

    python benchmarks/predict_throughput.py --json                 # CLIP ViT-B/16 STG-CMA, both precisions
    python benchmarks/predict_throughput.py --device cuda --json   # on a GPU (plain PyTorch path)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from kernel_timing import dtype_checked
from torch.utils.flop_counter import FlopCounterMode
from train_step import CPU_KERNEL_FLOPS, matmul_peak_gflops, peak_rss_mb, reset_peak_rss, synchronize

from avadapt.data.media import write_mp4
from avadapt.prediction import predict_video, window_starts

DTYPES = {"32": torch.float32, "bf16": torch.bfloat16}


def write_video(path: Path, seconds: int, size: tuple[int, int], fps: int, seed: int) -> Path:
    """A synthetic mp4 of ``seconds`` seconds: one random 8 × 8 block pattern per second, and a tone."""
    rng = np.random.default_rng(seed)
    height, width = size
    blocks = rng.integers(0, 256, (seconds, 8, 8, 3), dtype=np.uint8)
    frames = blocks.repeat(height // 8, axis=1).repeat(width // 8, axis=2).repeat(fps, axis=0)  # (N, H, W, 3)
    sample_rate = 16000
    t = np.arange(seconds * sample_rate) / sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return write_mp4(path, frames, fps=fps, audio=audio, sample_rate=sample_rate)


def flop_per_window(model, preprocessing: dict, dtype: torch.dtype, device: str) -> int:
    """FLOPs of the model's forward over one window (T segments), counted, not timed."""
    window = int(preprocessing["num_segments"])
    size = preprocessing["video"]["input_size"][-1]
    fbank = preprocessing["fbank"]
    video = torch.randn(1, window, 3, size, size, device=device)
    audio = torch.randn(1, window, 1, fbank["num_mel_bins"], fbank["target_frames"], device=device)
    counter = FlopCounterMode(display=False, custom_mapping=CPU_KERNEL_FLOPS)
    with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32), counter:
        model(video, audio)
    return counter.get_total_flops()


def run(model, preprocessing: dict, videos: list[Path], dtype: torch.dtype, device: str,
        batch_windows: int) -> dict:
    """Predict every video once; the wall time, the video seconds and the FLOPs of all of them."""
    per_window = flop_per_window(model, preprocessing, dtype, device)
    window = int(preprocessing["num_segments"])
    peaks = [matmul_peak_gflops(dtype, device=device)]
    wall, seconds, flop = 0.0, 0.0, 0
    for path in videos:
        start = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            prediction = predict_video(model, path, preprocessing, batch_windows=batch_windows)
        synchronize(device)
        wall += time.perf_counter() - start
        segments = len(prediction.probabilities)
        seconds += segments * prediction.info["segment_seconds"]
        flop += per_window * len(window_starts(segments, window))
    peaks.append(matmul_peak_gflops(dtype, device=device))
    peak = max(p[0] for p in peaks)
    return {
        "videos": len(videos), "video_s": round(seconds, 1), "wall_s": round(wall, 2),
        "video_s_per_s": round(seconds / wall, 3),
        "minutes_per_hour_of_video": round(60 * wall / seconds, 2),
        "gflop": round(flop / 1e9, 1), "achieved_gflops": round(flop / wall / 1e9, 1),
        "matmul_peak_gflops": round(peak, 1), "fraction_of_peak": round(flop / wall / 1e9 / peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_base_patch16_clip_224")
    parser.add_argument("--method", default="stg_cma")
    parser.add_argument("--task", default="ave")
    parser.add_argument("--backbone-option", action="append", default=[], metavar="KEY=VALUE",
                        help="timm option, e.g. img_size=32 (integers only)")
    parser.add_argument("--fbank-option", action="append", default=[], metavar="KEY=VALUE",
                        help="fbank field replacing the audio front end's, e.g. num_mel_bins=32")
    parser.add_argument("--precision", choices=["32", "bf16", "both"], default="both")
    parser.add_argument("--allow-emulated-bf16", action="store_true",
                        help="run bf16 even on a CPU without native bf16 arithmetic")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--long-seconds", type=int, default=300, help="length of the one long video")
    parser.add_argument("--short-videos", type=int, default=20, help="how many short videos")
    parser.add_argument("--short-seconds", type=int, default=10, help="length of each short video")
    parser.add_argument("--fps", type=int, default=8, help="frame rate of the synthetic videos")
    parser.add_argument("--video-size", type=int, nargs=2, default=(240, 320), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--batch-windows", type=int, default=4, help="windows per forward (predict_video's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    precisions = ["32", "bf16"] if args.precision == "both" else [args.precision]
    if args.device == "cpu" and "bf16" in precisions:
        args.precision = "bf16"
        dtype_checked(parser, args)  # exits with a clear message where bf16 would be emulated

    from avadapt.training.module import AVAdaptModule

    torch.manual_seed(0)

    def value(text: str) -> int:
        return int(text)

    module = AVAdaptModule(backbone=args.backbone, method=args.method, task=args.task,
                           backbone_options={k: value(v) for k, v in (o.split("=", 1) for o in args.backbone_option)}
                           or None,
                           fbank={k: value(v) for k, v in (o.split("=", 1) for o in args.fbank_option)} or None)
    model, preprocessing = module.model.to(args.device).eval(), module.preprocessing
    with tempfile.TemporaryDirectory(prefix="avadapt-throughput-") as folder:
        size = tuple(args.video_size)
        long_video = [write_video(Path(folder) / "long.mp4", args.long_seconds, size, args.fps, seed=0)]
        short_videos = [write_video(Path(folder) / f"short_{i:03d}.mp4", args.short_seconds, size, args.fps, seed=i + 1)
                        for i in range(args.short_videos)]
        results = []
        for precision in precisions:
            for name, videos in (("one long video", long_video), ("many short videos", short_videos)):
                if not videos:  # --short-videos 0: the long video alone
                    continue
                reset_peak_rss()
                if args.device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                result = run(model, preprocessing, videos, DTYPES[precision], args.device, args.batch_windows)
                memory = (torch.cuda.max_memory_allocated() if args.device == "cuda" else None)
                results.append({"precision": precision, "inputs": name, **result,
                                "peak_rss_mb": round(peak_rss_mb(), 1),
                                **({"peak_cuda_allocated_mb": round(memory / 2**20, 1)} if memory else {})})
    report = {"backbone": args.backbone, "method": args.method, "task": args.task, "device": (
        torch.cuda.get_device_name() if args.device == "cuda" else "cpu"), "threads": torch.get_num_threads(),
        "batch_windows": args.batch_windows, "fps": args.fps, "video_size": list(size),
        "median_video_s_per_s": statistics.median(r["video_s_per_s"] for r in results), "runs": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, item in report.items():
        if key != "runs":
            print(f"{key:>22}: {item}")
    for r in results:
        print(f"{r['precision']:>4} {r['inputs']:<18} {r['video_s']:>7.0f} s of video in {r['wall_s']:>7.1f} s: "
              f"{r['video_s_per_s']:.2f} s/s, {r['minutes_per_hour_of_video']:.1f} min per hour of video, "
              f"{r['fraction_of_peak']:.3f} of the {r['matmul_peak_gflops']:.0f} GFLOP/s matmul peak, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
