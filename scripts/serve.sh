#!/usr/bin/env bash
# Serve MLSharp on this machine: Triton (preprocess -> sharp -> postprocess, the `mlsharp` ensemble)
# behind the gateway on http://127.0.0.1:8080 (web page at /, API at /v1, docs at /docs).
#
#   scripts/serve.sh                                  official checkpoint (downloaded once), full stack
#   scripts/serve.sh --checkpoint PATH                a local copy of sharp_2572gikvuh.pt
#   scripts/serve.sh --preset test --random-weights   smoke run: random weights, outputs stamped
#   scripts/serve.sh --backend local ...              no Triton: the gateway runs the network itself
# Options: --port N (gateway, 8080), --triton-http-port N (8000), --triton-grpc-port N (8001),
# --triton-metrics-port N (8002); anything after `--` goes to `python -m gateway serve`.
# Embedded defaults: results in ./artifacts/serve/results, in-process cache, no Redis needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

preset=full checkpoint="" random=0 backend=triton port=8080
http_port=8000 grpc_port=8001 metrics_port=8002
gateway_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --checkpoint) checkpoint="$2"; shift 2 ;;
    --random-weights) random=1; shift ;;
    --backend) backend="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --triton-http-port) http_port="$2"; shift 2 ;;
    --triton-grpc-port) grpc_port="$2"; shift 2 ;;
    --triton-metrics-port) metrics_port="$2"; shift 2 ;;
    --) shift; gateway_args=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "serve: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
VENV="${MLSHARP_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STATE="$ROOT/artifacts/serve"
mkdir -p "$STATE"

weights=()
if [ "$random" = 1 ]; then
  weights=(--random-weights)
  key="$preset-random-seed0"
else
  if [ -z "$checkpoint" ]; then
    # Fails at once, naming the URL and --checkpoint, when the download is impossible.
    checkpoint="$("$PY" -c 'import sys
from mlsharp.checkpoint import CHECKPOINT_URL, default_checkpoint_path, download_checkpoint
from mlsharp.errors import MLSharpError
path = default_checkpoint_path()
try:
    print(path if path.is_file() else download_checkpoint(CHECKPOINT_URL, path))
except MLSharpError as error:
    sys.exit(f"serve: {error}")')"
  fi
  weights=(--checkpoint "$checkpoint")
  key="$preset-$(basename "$checkpoint" .pt)"
fi

gateway=(--port "$port" --results-dir "$STATE/results")
if [ "$backend" = local ]; then
  gateway+=(--backend local --preset "$preset")
  if [ "$random" = 1 ]; then gateway+=(--random-weights); else gateway+=(--checkpoint "$checkpoint"); fi
  exec "$PY" -m gateway serve "${gateway[@]}" "${gateway_args[@]}"
fi

export_dir="$STATE/export-$key"
if [ ! -f "$export_dir/export_manifest.json" ]; then
  echo "serve: exporting the $preset network to $export_dir (once)"
  "$PY" -m export --preset "$preset" "${weights[@]}" --formats onnx --out "$export_dir.partial"
  rm -rf "$export_dir" && mv "$export_dir.partial" "$export_dir"
fi

"$PY" -m mlsharp.triton.server --repository "$export_dir/model_repository" \
  --http-port "$http_port" --grpc-port "$grpc_port" --metrics-port "$metrics_port" &
triton_pid=$!
trap 'kill -TERM "$triton_pid" 2>/dev/null; wait "$triton_pid" 2>/dev/null' EXIT INT TERM
# The gateway reports "not ready" (503) until Triton has loaded the models.
"$PY" -m gateway serve "${gateway[@]}" --backend triton --triton-url "127.0.0.1:$grpc_port" "${gateway_args[@]}"
