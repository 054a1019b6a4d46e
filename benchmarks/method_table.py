"""Markdown table of ``train_step.py`` results, one row per method × precision, each in a fresh process.

    python benchmarks/method_table.py --backbone vit_base_patch16_clip_224 --methods stg_cma av_stfp probe
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

STEP = Path(__file__).with_name("train_step.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="vit_base_patch16_clip_224")
    parser.add_argument("--methods", nargs="+", default=["stg_cma", "av_stfp", "probe"])
    parser.add_argument("--precisions", nargs="+", default=["32", "bf16"])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="passed on to train_step.py")
    args = parser.parse_args()
    print("| method | precision | trainable | step (s) | peak RSS (MB) | GFLOP/step | fraction of matmul peak |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods:
        for precision in args.precisions:
            command = [sys.executable, str(STEP), "--backbone", args.backbone, "--method", method,
                       "--precision", precision, "--frames", str(args.frames), "--batch", str(args.batch),
                       "--steps", str(args.steps), "--warmup", "1", "--json", *args.extra]
            out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            print(f"| {method} | {precision} | {out['trainable_params'] / 1e6:.2f}M | {out['step_s']:.2f} | "
                  f"{out['peak_rss_mb']:.0f} | {out['gflop_per_step']:.0f} | {out['fraction_of_peak']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
