#!/usr/bin/env bash
# Runs every test on a fresh machine: set-up (idempotent), lint, type check, then the whole pytest suite.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/network -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
VENV="${MLSHARP_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
echo "== ruff"
ruff check .
ruff format --check . >/dev/null || { echo "ruff format: files need formatting (run: ruff format .)"; ruff format --check .; exit 1; }
echo "== mypy"
mypy  # [tool.mypy] in pyproject.toml: strict on src/mlsharp, checked bodies in gateway/
echo "== pytest"
exec python -m pytest -q -rs "$@"  # pyproject adds --durations=15
