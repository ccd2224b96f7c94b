# syntax=docker/dockerfile:1.7
#
# MLSharp gateway (FastAPI): slim Python image, non-root, health check on /v1/health.
# It talks to Triton over gRPC (MLSHARP_TRITON_URL) and to Redis (MLSHARP_REDIS_URL).
#
#   docker build -f docker/gateway.Dockerfile -t mlsharp-gateway:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# torch is a dependency of the core package; the CPU wheel keeps the CUDA libraries out.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Extras of the mlsharp package with the gateway's runtime dependencies.
ARG MLSHARP_EXTRAS=gateway
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:${PATH}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY gateway ./gateway
COPY export ./export
# DL3013: this installs the project itself; its dependency pins live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && pip install ".[${MLSHARP_EXTRAS}]" \
 && python -c "import gateway, mlsharp; print('gateway', gateway.__file__)"


FROM ${PYTHON_IMAGE} AS runtime
ARG APP_UID=10001
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLSHARP_HOST=0.0.0.0 \
    MLSHARP_PORT=8080 \
    MLSHARP_RESULTS_DIR=/data/results
RUN useradd --uid "${APP_UID}" --no-create-home --shell /usr/sbin/nologin mlsharp \
 && mkdir -p /data/results \
 && chown -R "${APP_UID}:${APP_UID}" /data
COPY --from=build /opt/venv /opt/venv
USER ${APP_UID}
WORKDIR /data
EXPOSE 8080
# No curl in slim images: the health probe is a one-line Python HTTP GET.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1/health' % os.environ.get('MLSHARP_PORT', '8080'), timeout=4)"]
CMD ["python", "-m", "gateway"]
