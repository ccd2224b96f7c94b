#!/usr/bin/env bash
# A private Docker engine for the tests: Debian's dockerd with its own socket, data root and pid
# file, no bridge network and no iptables rules (every build uses --network host, every container
# network_mode: host, every service binds 127.0.0.1).
#
#   scripts/docker-engine.sh start    start it (idempotent); prints `DOCKER_HOST=unix://...`
#   scripts/docker-engine.sh stop     stop it by its pid and wait until it is gone
#   scripts/docker-engine.sh status   exit 0 when it answers
#
# The data root is kept between runs (images and the BuildKit cache make a second build fast);
# MLSHARP_DOCKER_ROOT moves it. Needs root and Debian's docker.io (scripts/setup.sh installs it).
set -euo pipefail
STATE="${MLSHARP_DOCKER_ROOT:-/var/lib/mlsharp-docker}"
RUN_DIR="${MLSHARP_DOCKER_RUN:-/run/mlsharp-docker}"
SOCK="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$RUN_DIR/dockerd.log"
DOCKER=/usr/bin/docker  # Debian's CLI, matching the engine (another docker may come first on PATH)
export DOCKER_HOST="unix://$SOCK"

answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && answers; then
    echo "DOCKER_HOST=$DOCKER_HOST"
    return 0
  fi
  command -v dockerd >/dev/null || { echo "docker-engine: dockerd missing (apt-get install docker.io)" >&2; exit 3; }
  mkdir -p "$STATE" "$RUN_DIR"
  rm -f "$PIDFILE" "$SOCK"
  # setsid: the engine outlives this script; `stop` ends it by pid.
  setsid dockerd --host "$DOCKER_HOST" --data-root "$STATE" --exec-root "$RUN_DIR/exec" \
    --pidfile "$PIDFILE" --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
    --ip-masq=false --userland-proxy=false >"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    if answers; then
      echo "DOCKER_HOST=$DOCKER_HOST"
      return 0
    fi
    sleep 0.5
  done
  echo "docker-engine: dockerd did not answer within 30 s; its log ($LOG):" >&2
  tail -n 30 "$LOG" >&2
  exit 1
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
