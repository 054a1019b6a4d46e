"""AV-STFP's prompt-type ablation beside the frozen probe and STG-CMA, on an AVE-layout set of real media.

The set this expects: real photos and recordings in the AVE layout (one event class per clip, an event second
being one whose object is both seen and heard), decoded once with ``avadapt prepare ave --image-size 64
--num-mel-bins 64 --target-frames 48``, and a timm ``test_vit`` pretrained on other real photos at 64 pixels
(a safetensors file without classifier head). Every row trains as ``avadapt demo`` trains its AVE runs
(``configs/ave/tiny_cpu.yaml``'s settings: 20 epochs, batch 4, lr 1e-3 with a one-epoch warm-up and a cosine to
1e-5, STG-CMA at ratio 1/4), on 64-pixel frames and 64 × 48 fbank images; the best validation checkpoint is
tested once. Rows: ``probe``, ``stg_cma`` and the AV-STFP rows ``none``, ``temporal``, ``spatial``, ``fusion``,
``temporal+spatial``, ``spatial+fusion``, ``temporal+fusion``, ``all`` (the prompt types switched on; the
method's other options at their defaults unless ``--options`` changes them).

    python benchmarks/realmedia_ablation.py --root SET --cache CACHE --weights PRE/backbone.safetensors \\
        --out OUT [--seeds 0 1] [--rows probe all temporal] [--options '{"prompt_lr_factor": 3}']

Writes ``OUT/results.json`` (one entry per row and seed: validation and test accuracy, trainable parameters,
training seconds, host) and prints the table; runs already in ``OUT/results.json`` are not trained again.
"""

from __future__ import annotations

import argparse
import json
import platform
import zlib
from pathlib import Path

import torch

from avadapt.demo import DemoData, train_run
from avadapt.tasks.ave.dataset import AVEAnnotations
from avadapt.tasks.ave.demo import AVEDemo
from avadapt.tasks.demo_spec import DemoRun
from avadapt.training.precision import default_precision

PROMPT_TYPES = ("temporal", "spatial", "fusion")
AV_STFP_ROWS = {"none": (), "temporal": ("temporal",), "spatial": ("spatial",), "fusion": ("fusion",),
                "temporal+spatial": ("temporal", "spatial"), "spatial+fusion": ("spatial", "fusion"),
                "temporal+fusion": ("temporal", "fusion"), "all": PROMPT_TYPES}
ROWS = ("probe", "stg_cma", *AV_STFP_ROWS)


def row_run(row: str, options: dict) -> DemoRun:
    if row == "probe":
        return DemoRun("probe", "probe")
    if row == "stg_cma":
        return DemoRun("stg_cma", "STG-CMA", method_options={"ratio": "1/4", "drop_path": 0.0})
    switches = {f"{kind}_prompts": kind in AV_STFP_ROWS[row] for kind in PROMPT_TYPES}
    return DemoRun("av_stfp", f"AV-STFP {row}", method_options={**options, **switches})


def host() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "threads": torch.get_num_threads(), "precision": default_precision(),
            "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="the set in the AVE layout")
    parser.add_argument("--cache", type=Path, required=True, help="its avadapt prepare cache (64 px, 64 × 48 fbank)")
    parser.add_argument("--weights", type=Path, required=True, help="the pretrained test_vit, safetensors")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--options", type=json.loads, default={}, help="AV-STFP options of every AV-STFP row")
    parser.add_argument("--epochs", type=int, default=AVEDemo.epochs)
    args = parser.parse_args()
    for path in (args.root / "Annotations.txt", args.cache, args.weights):
        if not path.exists():
            raise SystemExit(f"{path} not found")
    classes = len(AVEAnnotations.load(args.root).categories)
    # the AVE demo's training on this set: its classes, 64-pixel frames for the pretrained tiny ViT
    cfg = AVEDemo(num_classes=classes, image_size=64, epochs=args.epochs)
    torch.set_num_threads(cfg.threads)
    data = DemoData(args.root, args.cache, args.weights)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    tag = json.dumps(args.options, sort_keys=True)
    for row in args.rows:
        for seed in args.seeds:
            key = {"row": row, "seed": seed, "options": tag if row in AV_STFP_ROWS else "{}", "epochs": args.epochs}
            if any(all(r.get(k) == v for k, v in key.items()) for r in results):
                continue
            folder = args.out / "runs" / f"{row.replace('+', '_')}_seed{seed}_{zlib.crc32(tag.encode()):08x}"
            run = train_run(cfg, data, row_run(row, args.options), folder, default_precision(), seed=seed)
            results.append({**key, "val_accuracy": run["best_val_accuracy"],
                            "test_accuracy": run["test_accuracy"], "trainable": run["trainable_parameters"],
                            "train_seconds": run["train_seconds"], "host": host()})
            results_file.write_text(json.dumps(results, indent=1) + "\n")
    print("\n| row | options | seed | val accuracy | test accuracy | trainable |\n|---|---|---:|---:|---:|---:|")
    for r in results:
        if r["row"] in args.rows and r["seed"] in args.seeds and r["epochs"] == args.epochs:
            print(f"| {r['row']} | `{r['options']}` | {r['seed']} | {r['val_accuracy']:.3f} | "
                  f"{r['test_accuracy']:.3f} | {r['trainable']:,} |")


if __name__ == "__main__":
    main()
