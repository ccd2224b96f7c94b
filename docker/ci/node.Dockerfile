# CI stand-in for node:22-bookworm-slim: Debian's nodejs and npm on the local Debian base.
# Only the gateway image's build stage uses it (npm ci of the web page's vendor modules).
ARG BASE_IMAGE=mlsharp-ci/debian:bookworm
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
