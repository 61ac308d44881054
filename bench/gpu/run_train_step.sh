#!/usr/bin/env bash
# On a GPU machine (one H100/H200, Python 3.12 with torch, transformers and accelerate, no package index): install
# the wheels carried from bench/gpu/wheels/ (bench/gpu/fetch_wheels.sh) and the project itself, all --no-deps into
# /tmp/site, then run the Qwen2.5-VL-3B-shaped DGRPO vs TRL GRPO step bench with a time limit. Results go to
# $OUT/results.json and the whole log to $OUT/train_step.log. From the repository root, with the demo built here
# (`make demo`) and carried:
#     bash bench/gpu/run_train_step.sh [extra bench/gpu_train_step.py arguments]
# Device call: carry ["bench/gpu/wheels", "demo"], timeout_s 540 (the bench itself is stopped at BENCH_TIMEOUT).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mtvr-gpu-bench-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
wheels=(bench/gpu/wheels/*.whl)
[[ -e "${wheels[0]}" ]] || { echo "no wheels in bench/gpu/wheels: run bench/gpu/fetch_wheels.sh first"; exit 2; }
[[ -d demo/build/rl ]] || { echo "demo/build/rl missing: run \`make demo\` here and carry demo"; exit 2; }
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}" \
    || exit 3
# The project itself (the bench also finds it through the tree, which comes first on sys.path).
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site . \
    || echo "warning: installing the project failed; the bench runs from the tree"
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PY' 2>&1 | tee "$OUT/versions.txt"
import importlib.metadata as md
import sys
print("python", sys.version.split()[0])
for name in ("torch", "transformers", "accelerate", "tokenizers", "huggingface-hub", "trl", "datasets", "av", "decord"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "missing")
PY
timeout "${BENCH_TIMEOUT:-480}" "$PY" bench/gpu_train_step.py --shape 3b --device cuda --frames 64 \
    --out "$OUT/results.json" "$@" 2>&1 | tee "$OUT/train_step.log"
rc=${PIPESTATUS[0]}
[[ $rc == 124 ]] && echo "stopped at BENCH_TIMEOUT=${BENCH_TIMEOUT:-480} s"
exit "$rc"
