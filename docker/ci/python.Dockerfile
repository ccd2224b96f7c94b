# CI stand-in for python:3.11-slim-bookworm (no registry is reachable on our build machines):
# Debian's own Python 3.11 on the locally bootstrapped Debian base. Tagged mlsharp-ci/python:3.11.
ARG BASE_IMAGE=mlsharp-ci/debian:bookworm
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip python-is-python3 libpython3.11 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
