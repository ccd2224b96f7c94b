#!/usr/bin/env bash
# The prepared GPU check (issue 15): run from the repository root on a machine with one NVIDIA GPU
# and PyTorch with CUDA (the lent H100/H200 machines). Nothing is downloaded or installed: the core
# package runs from the source tree. Results land in $OUT (the device tool's output folder) or
# artifacts/gpu-check: gpu_check.json, nvidia-smi.csv, gpu_check.log.
# The Python part stops starting sections after GPU_CHECK_BUDGET_S (default 420 s); `timeout`
# stops it for good at 500 s, inside the 9 minutes a lent machine gives one command.
# GPU_CHECK_DRY_RUN=1: the same script on this machine's CPU at the test preset's sizes (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-artifacts/gpu-check}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
if [ "${GPU_CHECK_DRY_RUN:-0}" = "1" ]; then
  args=(--device cpu --preset test --repeats 1 --batches 1,2)
  echo "dry run on the CPU (no GPU queried)" | tee "$OUT/nvidia-smi.csv"
else
  args=()
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
  "$PYTHON" -c "import torch, numpy, PIL; assert torch.cuda.is_available(), 'no CUDA device'"
fi
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
timeout 500 "$PYTHON" -m benchmarks.gpu_check --out "$OUT" --budget-s "${GPU_CHECK_BUDGET_S:-420}" "${args[@]}" \
  2>&1 | tee "$OUT/gpu_check.log"
