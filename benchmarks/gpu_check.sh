#!/usr/bin/env bash
# The prepared GPU check (issue 7): run from the repository root on a machine with one NVIDIA GPU
# and PyTorch with CUDA. Nothing is downloaded: the core package runs from the source tree.
# Results land in $OUT (the device tool's output folder) or artifacts/gpu-check.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-artifacts/gpu-check}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
python3 -c "import torch, numpy, PIL; assert torch.cuda.is_available(), 'no CUDA device'"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
timeout 420 python3 benchmarks/gpu_check.py --out "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
