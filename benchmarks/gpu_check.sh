#!/usr/bin/env bash
# The prepared GPU check (issue 15): run from the repository root on a machine with one NVIDIA GPU
# and PyTorch with CUDA (the lent H100/H200 machines). Nothing is downloaded or installed: the core
# package runs from the source tree. Results land in $OUT (the device tool's output folder) or
# artifacts/gpu-check: gpu_check.json, nvidia-smi.csv, gpu_check.log.
# The Python part stops starting sections after GPU_CHECK_BUDGET_S (default 420 s); `timeout`
# stops it for good at 500 s, inside the 9 minutes a lent machine gives one command.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-artifacts/gpu-check}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
python3 -c "import torch, numpy, PIL; assert torch.cuda.is_available(), 'no CUDA device'"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
timeout 500 python3 benchmarks/gpu_check.py --out "$OUT" --budget-s "${GPU_CHECK_BUDGET_S:-420}" \
  2>&1 | tee "$OUT/gpu_check.log"
