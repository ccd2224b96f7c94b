# MLSharp gateway (FastAPI): slim Python image, non-root, health check on /v1/health.
# It talks to Triton over gRPC (MLSHARP_TRITON_URL) and to Redis (MLSHARP_REDIS_URL), and serves the
# web page: gateway/static (package data) and the vendor ES modules (three, Spark) from `npm ci`.
#
#   docker build -f docker/gateway.Dockerfile -t mlsharp-gateway:0.1.0 .
#
# Build arguments for machines without a registry or the PyTorch index (our CI, docker/ci/README.md):
# PYTHON_IMAGE / NODE_IMAGE = stand-ins, TORCH_INDEX_URL="" with TORCH_VERSION=2.13.0+cpu (wheels
# from docker/wheels/); the secret `ca` (a CA bundle file) reaches pip and npm, never a layer.

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export npm_config_cafile=/run/secrets/ca; fi \
 && npm ci --omit=dev --no-audit --no-fund --loglevel=error \
 && test -f node_modules/three/build/three.module.js \
 && test -f node_modules/@sparkjsdev/spark/dist/spark.module.min.js


FROM ${PYTHON_IMAGE} AS build
# torch is a dependency of the core package; the CPU wheel keeps the CUDA libraries out.
# Empty TORCH_INDEX_URL: torch comes from the wheels in docker/wheels/ (see docker/wheels/README.md).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Extras of the mlsharp package with the gateway's runtime dependencies.
ARG MLSHARP_EXTRAS=gateway
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY gateway ./gateway
COPY export ./export
# DL3013: this installs the project itself; its dependency pins live in pyproject.toml.
# hadolint ignore=DL3013
RUN --mount=type=bind,source=docker/wheels,target=/tmp/wheels \
    --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && if [ -n "${TORCH_INDEX_URL}" ]; then \
      pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    else \
      pip install --find-links /tmp/wheels "torch==${TORCH_VERSION}"; \
    fi \
 && pip install ".[${MLSHARP_EXTRAS}]" \
 && python -c "import gateway, mlsharp; print('gateway', gateway.__file__)" \
 && python -c "from gateway.api.web import STATIC_DIR; assert (STATIC_DIR / 'index.html').is_file(), STATIC_DIR"


FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLSHARP_HOST=0.0.0.0 \
    MLSHARP_PORT=8080 \
    MLSHARP_RESULTS_DIR=/data/results \
    MLSHARP_WEB_MODULES=/opt/mlsharp/web/node_modules
RUN useradd --uid "${APP_UID}" --no-create-home --shell /usr/sbin/nologin mlsharp \
 && mkdir -p /data/results \
 && chown -R "${APP_UID}:${APP_UID}" /data
COPY --from=build /opt/venv /opt/venv
COPY --from=web /web/node_modules /opt/mlsharp/web/node_modules
USER ${APP_UID}
WORKDIR /data
EXPOSE 8080
# No curl in slim images: the health probe is a one-line Python HTTP GET.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1/health' % os.environ.get('MLSHARP_PORT', '8080'), timeout=4)"]
CMD ["python", "-m", "gateway"]
