#!/usr/bin/env bash
# The GPU check: what avadapt does on one CUDA GPU, in under 8 minutes.
#   1. a training step (bf16, CLIP ViT-B/16 STG-CMA, T = 10, batch 8): time, fraction of the GPU's bf16 matmul
#      peak and peak memory (benchmarks/train_step.py), eager and then torch.compile'd;
#   2. prediction throughput, fp32 and bf16, one long video and many short ones (benchmarks/predict_throughput.py);
#   3. a short fit of configs/ave/tiny_cpu.yaml on the GPU, end to end, on synthetic AVE clips.
# Usage: benchmarks/gpu_check.sh [OUT_DIR]   (default: gpu_check_out). Each step writes its JSON or log to
# OUT_DIR and has its own time limit; the summary at the end names the GPU and every step's status.
# Without a CUDA device it refuses (exit status 2) before doing anything.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: torch sees no CUDA device on this machine; this check runs on a GPU machine only" >&2
    exit 2
fi

OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
failed=0
step() {  # step NAME SECONDS OUTPUT_FILE COMMAND...: run with a time limit, stdout to OUTPUT_FILE
    local name=$1 limit=$2 output=$3
    shift 3
    local start=$SECONDS
    if timeout "$limit" "$@" > "$output" 2> "$OUT/$name.stderr"; then
        echo "$name: ok in $((SECONDS - start)) s -> $output"
    else
        echo "$name: FAILED (status $?, limit $limit s) after $((SECONDS - start)) s; see $OUT/$name.stderr"
        failed=1
    fi
}

"$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")' | tee "$OUT/gpu.txt"

TRAIN=(benchmarks/train_step.py --device cuda --precision bf16 --backbone vit_base_patch16_clip_224 --method stg_cma
       --frames 10 --batch 8 --warmup 2 --steps 5 --json)
step train_step_bf16 90 "$OUT/train_step_bf16.json" "$PYTHON" "${TRAIN[@]}"
step train_step_bf16_compiled 140 "$OUT/train_step_bf16_compiled.json" "$PYTHON" "${TRAIN[@]}" --compile
step predict_throughput 120 "$OUT/predict_throughput.json" "$PYTHON" benchmarks/predict_throughput.py \
    --device cuda --long-seconds 300 --short-videos 20 --short-seconds 10 --json
step synth_ave 30 "$OUT/synth_ave.log" "$PYTHON" -m avadapt.cli synth ave --out "$OUT/data/ave" --clips 40 \
    --classes 16
step tiny_fit 90 "$OUT/tiny_fit.log" "$PYTHON" -m avadapt.cli fit --config configs/ave/tiny_cpu.yaml \
    --data.root "$OUT/data/ave" --trainer.accelerator gpu --trainer.max_epochs 3 \
    --trainer.default_root_dir "$OUT/tiny_fit"

"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("GPU:", (out / "gpu.txt").read_text().strip())
for name in ("train_step_bf16", "train_step_bf16_compiled"):
    try:
        r = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        continue
    print(f"{name}: {r['step_s']} s/step, {r['fraction_of_peak']} of the {r['matmul_peak_gflops']} GFLOP/s bf16 "
          f"matmul peak, peak {r['peak_cuda_allocated_mb']} MB allocated")
try:
    for r in json.loads((out / "predict_throughput.json").read_text())["runs"]:
        print(f"predict {r['precision']:>4} {r['inputs']}: {r['video_s_per_s']} s of video per s, "
              f"{r['fraction_of_peak']} of the matmul peak")
except (OSError, ValueError):
    pass
PY
exit $failed
