"""Validation accuracy of one method under several settings, on the data and backbone of ``avadapt demo``.

Each setting is trained exactly as the demo trains its methods (its synthetic AVE, its random ``test_vit``,
seed, epochs, learning rates and the demo's options of that method; ``avadapt.demo.train_run``), with the
setting's method options added, and its best validation accuracy is printed. Settings are chosen on val; ``--test`` evaluates the best val
checkpoint on test once, for the final choice only.

    python benchmarks/demo_sweep.py --out /tmp/demo_sweep --method av_stfp \\
        --setting 'default={}' --setting 'prompts at 10x lr={"prompt_lr_factor": 10}'
    python benchmarks/demo_sweep.py --out /tmp/demo_sweep --method probe --setting 'probe={}' --test
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from avadapt.demo import build_data, train_run
from avadapt.tasks.ave.demo import AVEDemo
from avadapt.tasks.demo_spec import DemoRun
from avadapt.training.precision import default_precision


def parse_setting(text: str) -> tuple[str, dict]:
    """``'name={"option": value}'`` → (name, options)."""
    name, sep, options = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"a setting is NAME=JSON, got {text!r}")
    return name, json.loads(options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="demo directory: data reused when already there")
    parser.add_argument("--method", default="av_stfp")
    parser.add_argument("--setting", type=parse_setting, action="append", required=True, metavar="NAME=JSON")
    parser.add_argument("--epochs", type=int, default=AVEDemo.epochs)
    parser.add_argument("--test", action="store_true", help="also test each best val checkpoint (final choice only)")
    args = parser.parse_args()
    cfg = AVEDemo(epochs=args.epochs)
    torch.set_num_threads(cfg.threads)
    precision = default_precision()
    data = build_data(args.out, cfg)
    demo_options = next((run.method_options for run in cfg.runs() if run.method_name == args.method), {})
    rows = []
    for name, options in args.setting:
        run_dir = args.out / "sweep" / args.method / re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_")
        setting = DemoRun(args.method, name, method_options={**demo_options, **options})
        run = train_run(cfg, data, setting, run_dir, precision, test=args.test)
        rows.append((name, options, run))
        with (args.out / "sweep" / "results.jsonl").open("a") as log:
            log.write(json.dumps({"method": args.method, "setting": name, "options": options, **run}) + "\n")
    print(f"\n| {args.method} setting | options | val accuracy | test accuracy | trainable | train s |\n"
          "|---|---|---:|---:|---:|---:|")
    for name, options, run in rows:
        test = f"{run['test_accuracy']:.3f}" if "test_accuracy" in run else "—"
        print(f"| {name} | `{json.dumps(options)}` | {run['best_val_accuracy']:.3f} | {test} | "
              f"{run['trainable_parameters']:,} | {run['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()
