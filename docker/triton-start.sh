#!/usr/bin/env bash
# Start tritonserver on the exported model repository (used by compose and Kubernetes).
# Every knob is an environment variable; defaults match docker-compose.yml and deploy/k8s.
set -euo pipefail

REPO="${MLSHARP_MODEL_REPOSITORY:-/models/repository}"
MARKER="${MLSHARP_EXPORT_MARKER:-/models/export-complete.json}"

if [ ! -f "$MARKER" ] || [ ! -d "$REPO" ]; then
  echo "triton-start: no finished export ($MARKER or $REPO missing)." >&2
  echo "triton-start: run the export first (compose: the 'export' service; k8s: the mlsharp-export Job)." >&2
  exit 1
fi
echo "triton-start: serving $REPO, exported as: $(tr -d '\n' < "$MARKER")"

# A GPU repository carries server.env: Triton's memory pools sized from its tensors by the export
# (mlsharp.triton.gpu_target.ServerMemory). Each KEY=VALUE there is a default; the environment wins.
if [ -f "$REPO/server.env" ]; then
  while IFS='=' read -r key value; do
    case "$key" in
      TRITON_[A-Z_]*) if [ -z "${!key:-}" ]; then export "$key=$value"; fi ;;
    esac
  done < "$REPO/server.env"
fi

# SC2054: the commas below belong to --backend-config values, they do not separate elements.
# shellcheck disable=SC2054
args=(
  --model-repository="$REPO"
  --http-port="${TRITON_HTTP_PORT:-8000}" --grpc-port="${TRITON_GRPC_PORT:-8001}"
  --metrics-port="${TRITON_METRICS_PORT:-8002}"
  # 0.0.0.0 inside a container network; 127.0.0.1 with host networking (our CI).
  --http-address="${TRITON_BIND_ADDRESS:-0.0.0.0}" --grpc-address="${TRITON_BIND_ADDRESS:-0.0.0.0}"
  --metrics-address="${TRITON_BIND_ADDRESS:-0.0.0.0}"
  --exit-timeout-secs="${TRITON_EXIT_TIMEOUT_S:-30}"
  --log-verbose="${TRITON_LOG_VERBOSE:-0}"
  --pinned-memory-pool-byte-size="${TRITON_PINNED_MEMORY_BYTES:-268435456}"
  --metrics-interval-ms="${TRITON_METRICS_INTERVAL_MS:-2000}"
  # Python-backend shared memory: one region per model instance, grown in steps as needed.
  --backend-config=python,shm-default-byte-size="${TRITON_PYTHON_SHM_DEFAULT_BYTES:-16777216}"
  --backend-config=python,shm-growth-byte-size="${TRITON_PYTHON_SHM_GROWTH_BYTES:-16777216}"
)
# Triton's CUDA memory pool on GPU 0 (GPU tensors handed between models); unset on CPU machines.
if [ -n "${TRITON_CUDA_MEMORY_POOL_BYTES:-}" ]; then
  args+=(--cuda-memory-pool-byte-size="0:${TRITON_CUDA_MEMORY_POOL_BYTES}")
fi
# Extra flags, split on spaces on purpose (e.g. "--log-info=true --model-control-mode=none").
# shellcheck disable=SC2206
extra=(${TRITON_EXTRA_ARGS:-})
exec tritonserver "${args[@]}" "${extra[@]}"
