#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh Debian 12 machine: system packages (as root), the
# project virtual environment with every Python dependency, and the web page's npm packages.
# Usage: scripts/setup.sh            (called by scripts/serve.sh and scripts/test.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${MLSHARP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

# redis-server, postgresql: the shared-state tests start real servers; chromium: the web page's browser tests (Debian's build, no download);
# docker.io + debootstrap: the compose stage (a private dockerd, base images built from Debian).
APT_PACKAGES=(redis-server postgresql chromium docker.io debootstrap)

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages: ${missing[*]} (run as root or install them)" >&2
    return 0
  fi
  echo "setup: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.mlsharp-setup-stamp"
  local want
  want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "setup: installing Python dependencies into $VENV"
  # torch first, pinned, so the CPU wheel on these machines is used (never a multi-GB CUDA build).
  "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[all]"
  # Only the tritonserver binary and stubs are used from this wheel; its numpy<2 pin would clash.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps nvidia-pytriton==0.7.0
  echo "$want" > "$stamp"
}

install_web() {
  # The page's three.js and Spark modules come from npm with a lock file and are served by the
  # gateway itself (never from a CDN).
  local stamp="web/node_modules/.mlsharp-lock-sha"
  local want
  want="$(sha256sum web/package-lock.json | cut -c1-16)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: npm not found: the web page's 3D viewer will be unavailable" >&2
    return 0
  fi
  echo "setup: npm ci (web/)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
}

install_triton_stub_env() {
  # Triton 2.51's Python stub needs NumPy < 2: a small overlay environment beside the venv.
  "$VENV/bin/python" -m mlsharp.triton.server --setup-stub-env >/dev/null
}

install_apt
install_python
install_web
install_triton_stub_env
if [ "${MLSHARP_SETUP_DEPLOY_TOOLS:-1}" = "1" ]; then
  # Linters and schema validators for docker/, deploy/ (pinned; PyPI and Debian only).
  bash scripts/validate-deploy.sh --install-only >/dev/null
fi
echo "setup: ready ($VENV)"
