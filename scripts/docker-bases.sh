#!/usr/bin/env bash
# Base images for machines that reach no container registry (our CI): a Debian 12 base bootstrapped
# from Debian's packages, then stand-ins for the images docker-compose.yml names, from docker/ci/:
#
#   mlsharp-ci/debian:bookworm          debootstrap --variant=minbase + docker import (once)
#   mlsharp-ci/python:3.11              for python:3.11-slim-bookworm (gateway image)
#   mlsharp-ci/node:bookworm            for node:22-bookworm-slim (gateway image, npm ci stage)
#   mlsharp-ci/tritonserver:24.10-cpu   for nvcr.io/nvidia/tritonserver:24.10-py3 (Triton 2.51 on CPU)
#   mlsharp-ci/redis:bookworm           for redis:7-alpine
#   mlsharp-ci/prometheus:bookworm      for prom/prometheus
#   mlsharp-ci/postgres:bookworm        for postgres:16 (compose --profile scale)
#   mlsharp-ci/seaweedfs:4.48           for chrislusf/seaweedfs (compose --profile scale)
#
# Idempotent: the Debian base is reused when present; the stand-ins are rebuilt from the layer
# cache (seconds). Needs DOCKER_HOST (scripts/docker-engine.sh start), root and debootstrap.
# Package access inside builds uses the host's CA bundle as a BuildKit secret (never a layer).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER=/usr/bin/docker
CA="${MLSHARP_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
BASE=mlsharp-ci/debian:bookworm

debian_mirror() {
  # The mirror apt uses on this host (deb822 or one-line sources), else Debian's CDN name.
  local uri
  uri="$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')"
  [ -n "$uri" ] || uri="$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')"
  echo "${uri:-http://deb.debian.org/debian}"
}

bootstrap_debian() {
  if "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    return 0
  fi
  command -v debootstrap >/dev/null || { echo "docker-bases: debootstrap missing (apt-get install debootstrap)" >&2; exit 3; }
  local rootfs mirror
  rootfs="$(mktemp -d /tmp/mlsharp-rootfs.XXXXXX)"
  mirror="$(debian_mirror)"
  echo "docker-bases: debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 20 "$rootfs.log" >&2; rm -rf "$rootfs" "$rootfs.log"; exit 1; }
  # Without the package lists the image is smaller; each Dockerfile runs apt-get update itself.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | "$DOCKER" import - "$BASE" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}

build() {  # build TAG DOCKERFILE
  echo "docker-bases: $1"
  DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host --secret "id=ca,src=$CA" \
    -f "$ROOT/docker/ci/$2" -t "$1" "$ROOT/docker/ci" >/dev/null
}

start=$(date +%s)
bootstrap_debian
build mlsharp-ci/python:3.11 python.Dockerfile
build mlsharp-ci/node:bookworm node.Dockerfile
build mlsharp-ci/tritonserver:24.10-cpu tritonserver.Dockerfile
build mlsharp-ci/redis:bookworm redis.Dockerfile
build mlsharp-ci/prometheus:bookworm prometheus.Dockerfile
build mlsharp-ci/postgres:bookworm postgres.Dockerfile
build mlsharp-ci/seaweedfs:4.48 seaweedfs.Dockerfile
echo "docker-bases: ready in $(( $(date +%s) - start )) s"
