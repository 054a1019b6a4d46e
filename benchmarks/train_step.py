"""Training-step benchmark: speed as a fraction of this machine's matmul peak, and peak memory.

Random weights, random inputs; forward + backward + optimizer step on the trainable parameters.
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one step; the matmul peak is a
large matmul in the same dtype measured in the same process before and after every timed step, so the
ratio holds across machines and across a shared machine's swings in speed.

    python benchmarks/train_step.py --backbone vit_base_patch16_clip_224 --method stg_cma \
        --preset base --frames 10 --batch 2 --precision bf16 --json

On a GPU (``--device cuda``) the model runs the plain PyTorch path (``avadapt.kernels.cpu_fast_path``), the
peak is a larger matmul on the GPU, and the peak memory is the CUDA allocator's; ``--compile`` times the
``torch.compile``d adapted backbone (its compilation falls in the warm-up steps):

    python benchmarks/train_step.py --device cuda --precision bf16 --frames 10 --batch 8 --json

Methods with an audio encoder of their own take it by name and timm options; spectrograms then have its size:

    python benchmarks/train_step.py --backbone vit_base_patch16_224 --method dg_sct \
        --audio-backbone swin_tiny_patch4_window7_224 --audio-backbone-option img_size=128 \
        --audio-backbone-option window_size=8 --audio-backbone-option in_chans=1 --frames 4 --batch 1
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import re
import resource
import statistics
import time
from pathlib import Path

import torch
from kernel_timing import add_precision_options, dtype_checked
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

import avadapt
from avadapt.kernels import enable_huge_pages, return_free_heap, tune_heap_for_training


def parse_value(text: str):
    for cast in (int, float):
        with contextlib.suppress(ValueError):
            return cast(text)
    return {"true": True, "false": False}.get(text.lower(), text)


# the matrix-multiply kernels a ViT step spends most time in (oneDNN's linear: avadapt.kernels.frozen_linear)
GEMM_OPS = ("mm", "addmm", "bmm", "baddbmm", "_linear_pointwise")


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work, so that a wall-clock time covers it (nothing on a CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak_gflops(dtype: torch.dtype, size: int | None = None, repeats: int = 10,
                       device: str = "cpu") -> tuple[float, float]:
    """GFLOP/s of a size³ matmul in ``dtype``: the best of ``repeats`` (the peak) and their mean. size: 2048 on
    a CPU, 8192 on a GPU (smaller products leave a GPU's units idle).

    The mean is what a matmul sustains over the same second, contention from other tenants included: on a
    shared machine it sits under the best, and a training step, which runs for seconds, sees the mean.
    """
    size = size or (2048 if device == "cpu" else 8192)
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    for _ in range(2):
        a @ b
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    flop = 2 * size**3
    return flop / min(times) / 1e9, flop * repeats / sum(times) / 1e9


def cpu_jiffies() -> tuple[int, int] | None:
    """(steal, total) CPU time of the whole machine from /proc/stat, in clock ticks; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[7], sum(fields[:8])


def reset_peak_rss() -> bool:
    """Restart the kernel's resident-memory high-water mark (Linux), so the FLOP-counting step is not in it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), or of the whole process where that is unknown."""
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_flash_attention_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_attention_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _onednn_linear_flop(x, weight, *args, out_shape=None, **kwargs) -> int:
    return 2 * math.prod(x[:-1]) * weight[0] * weight[1]


# FlopCounterMode knows the CUDA attention kernels but not the one scaled_dot_product_attention runs on a CPU,
# nor oneDNN's linear: without these, every fp32 spatial attention's QKᵀ and PV (about 5 % of a ViT-B/16
# step) and every frozen linear layer's forward, bf16 or fp32 (about 45 %), would count as zero.
CPU_KERNEL_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_attention_backward_flop,
}
if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
    CPU_KERNEL_FLOPS[torch.ops.mkldnn._linear_pointwise] = _onednn_linear_flop


def count_flops(step, model, recomputation: bool) -> tuple[int, int]:
    """FLOPs of one step, all and those of ``GEMM_OPS``. Without recomputation: the model's own work, the
    honest base for a fraction of peak (recomputed activations are overhead, not credit). With it: what the
    step really executes."""
    switches = [(model.method.config, "activation_checkpointing")]
    switches += [(handle, "recompute_ffn") for handle in model.backbone.blocks]
    switches += [(m, name) for m in model.modules()
                 for name in ("recompute_temporal_attention", "rebuild_sums_in_backward")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in switches if hasattr(owner, name)]
    if not recomputation:
        for owner, name, _ in saved:
            setattr(owner, name, False)
    counter = FlopCounterMode(display=False, custom_mapping=CPU_KERNEL_FLOPS)
    with counter:
        step()
    for owner, name, value in saved:
        setattr(owner, name, value)
    by_op = counter.get_flop_counts()["Global"]
    return counter.get_total_flops(), sum(n for op, n in by_op.items() if op.__name__ in GEMM_OPS)


def time_breakdown(step, rows: int) -> tuple[float, float, str]:
    """Profile one step: (seconds in ``GEMM_OPS`` kernels, the step's wall seconds, top-``rows`` table).

    A kernel's self time is measured on the calling thread, which waits for the kernel's own threads (and
    runs backward on CPU), so GEMM time and the rest add up to the step.
    """
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    events = profiler.key_averages()
    gemm_us = sum(e.self_cpu_time_total for e in events if e.key.split("::")[-1] in GEMM_OPS)
    table = events.table(sort_by="self_cpu_time_total", row_limit=rows) if rows else ""
    return gemm_us / 1e6, wall, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_base_patch16_clip_224")
    parser.add_argument("--method", default="stg_cma")
    parser.add_argument("--task", default="ave")
    parser.add_argument("--preset")
    parser.add_argument("--ratio")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="any other method/task option, e.g. --option activation_checkpointing=true")
    parser.add_argument("--audio-backbone", help="a separate audio encoder (methods that take one: dg_sct)")
    parser.add_argument("--audio-backbone-option", action="append", default=[], metavar="KEY=VALUE",
                        help="timm option of the audio encoder, e.g. img_size=128")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's own")
    parser.add_argument("--mel-bins", type=int, default=128)
    parser.add_argument("--audio-frames", type=int, default=102)
    add_precision_options(parser, default="32")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's mmap threshold and torch's page size alone (avadapt's CLI sets both)")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="print the ROWS costliest ops of the profiled step (the GEMM breakdown's)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the adapted backbone")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    on_cpu = args.device == "cpu"
    if not on_cpu and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    huge_pages = None if args.default_allocator or not on_cpu else enable_huge_pages()
    # after the huge-page switch: the check imports Lightning, which creates tensors, and torch reads its huge-page
    # switch at the first one (without huge pages this step's fp32 peak rose from 3838 to 4888 MB)
    dtype = dtype_checked(parser, args) if on_cpu else {"32": torch.float32, "bf16": torch.bfloat16}[args.precision]

    from avadapt.backbones import AudioEmbeddingConfig  # imports timm, which creates tensors

    options = {k: v for k, v in (("preset", args.preset), ("ratio", args.ratio)) if v is not None}
    options.update((k, parse_value(v)) for k, v in (o.split("=", 1) for o in args.option))
    backbone_options = {"audio": AudioEmbeddingConfig(num_mel_bins=args.mel_bins, num_frames=args.audio_frames)}
    if args.audio_backbone:  # the spectrogram size is the audio encoder's
        del backbone_options["audio"]
        options["audio_backbone"] = args.audio_backbone
        options["audio_backbone_options"] = {
            k: parse_value(v) for k, v in (o.split("=", 1) for o in args.audio_backbone_option)}
    if args.image_size:
        backbone_options["img_size"] = args.image_size
    torch.manual_seed(0)
    model = avadapt.create_model(backbone=args.backbone, method=args.method, task=args.task,
                                 num_frames=args.frames, backbone_options=backbone_options, **options).to(args.device)
    spectrogram = model.audio_backbone.audio
    args.mel_bins, args.audio_frames = spectrogram.num_mel_bins, spectrogram.num_frames
    model.train()
    heap = None if args.default_allocator or not on_cpu else tune_heap_for_training(model.backbone)  # as training
    if args.precision == "bf16":
        model.backbone.store_frozen_weights_as(torch.bfloat16)  # as avadapt's training module does
    size = model.backbone.data_config["input_size"][-1]
    video = torch.randn(args.batch, args.frames, 3, size, size, device=args.device)
    audio = torch.randn(args.batch, args.frames, 1, args.mel_bins, args.audio_frames, device=args.device)
    labels = {"labels": torch.randint(0, 29, (args.batch, args.frames), device=args.device)}
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = model.head.loss(model(video, audio), labels)
        loss.backward()
        optimizer.step()
        synchronize(args.device)

    flop_per_step, _ = count_flops(step, model, recomputation=False)
    executed_flop_per_step, executed_gemm_flop = count_flops(step, model, recomputation=True)
    if heap is not None:
        # The FLOP-counting steps run with all recomputation off: without this, the holes they leave would
        # set a floor under the peak of a configuration that recomputes to save memory.
        return_free_heap()
    if args.compile:  # after the FLOP counts, which count the eager model's operations
        model.method.compile()
    if on_cpu:
        steps_only = reset_peak_rss()
    else:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step()
    # The matmul peak is measured before and after every timed step, and each step is set against the
    # better of its two: on a shared machine the speed drifts by tens of percent within minutes, and a
    # peak taken only at the start or the end would flatter or sink the ratio of every step.
    peaks = [matmul_peak_gflops(dtype, device=args.device)]
    times, steal = [], []
    for _ in range(args.steps):
        jiffies = cpu_jiffies()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if jiffies is not None:
            after = cpu_jiffies()
            steal.append((after[0] - jiffies[0]) / max(after[1] - jiffies[1], 1))
        peaks.append(matmul_peak_gflops(dtype, device=args.device))
    step_peaks = [max(before[0], after[0]) for before, after in itertools.pairwise(peaks)]
    step_means = [max(before[1], after[1]) for before, after in itertools.pairwise(peaks)]
    fractions = [flop_per_step / t / 1e9 / p for t, p in zip(times, step_peaks)]
    peak_mb = peak_rss_mb() if on_cpu else torch.cuda.max_memory_allocated() / 2**20
    # after the RSS reading: the profiler's own records are not the model's memory; on a GPU the profiler's CPU
    # times are launch times, not the kernels'
    gemm_s, profiled_s, table = time_breakdown(step, args.profile) if on_cpu else (None, None, "")
    if table:
        print(table)
    step_s, fraction, peak = statistics.median(times), statistics.median(fractions), statistics.median(step_peaks)
    result = {
        "backbone": args.backbone, "method": args.method, "options": {k: str(v) for k, v in options.items()},
        "audio_input": [args.mel_bins, args.audio_frames],
        "frames": args.frames, "batch": args.batch, "precision": args.precision, "compiled": args.compile,
        "device": torch.cuda.get_device_name() if not on_cpu else "cpu",
        "threads": torch.get_num_threads(),
        "allocator": "default" if heap is None else {
            "fixed_mmap_threshold": heap.fixed_mmap_threshold, "huge_pages": huge_pages},
        "trainable_params": sum(p.numel() for p in model.trainable_parameters()),
        "step_s": round(step_s, 4),
        "peak_rss_mb" if on_cpu else "peak_cuda_allocated_mb": round(peak_mb, 1),
        "peak_rss_scope": ("training steps" if steps_only else "whole process") if on_cpu else "training steps",
        "gflop_per_step": round(flop_per_step / 1e9, 2),
        "executed_gflop_per_step": round(executed_flop_per_step / 1e9, 2),
        "achieved_gflops": round(flop_per_step / step_s / 1e9, 2),
        "matmul_peak_gflops": round(peak, 2),
        "fraction_of_peak": round(fraction, 3),
        "step_s_each": [round(t, 2) for t in times],
        "fraction_of_peak_each": [round(f, 3) for f in fractions],
        # diagnostics: what bounds fraction_of_peak on this machine
        "matmul_mean_gflops": round(statistics.median(step_means), 2),
        "fraction_of_mean_matmul": round(statistics.median(
            flop_per_step / t / 1e9 / m for t, m in zip(times, step_means)), 3),
        "cpu_steal_fraction": round(statistics.median(steal), 4) if steal else None,
    }
    if on_cpu:
        result.update({
            "profiled_step_s": round(profiled_s, 3),
            "gemm_s": round(gemm_s, 3),
            "gemm_fraction_of_peak": round(executed_gemm_flop / max(gemm_s, 1e-9) / 1e9 / peak, 3),
            "fraction_of_peak_if_only_gemms": round(flop_per_step / max(gemm_s, 1e-9) / 1e9 / peak, 3),
        })
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
