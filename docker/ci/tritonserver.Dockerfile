# CI stand-in for nvcr.io/nvidia/tritonserver:24.10-py3 (Triton 2.51.0), for CPU-only machines with
# no registry: the same 2.51.0 release, taken from the nvidia-pytriton==0.7.0 wheel on PyPI and laid
# out where the NGC image keeps it, so docker/triton.Dockerfile runs unchanged on top of it:
#   /opt/tritonserver/bin/tritonserver, /opt/tritonserver/lib (the wheel's bundled libraries),
#   /opt/tritonserver/backends/python/{libtriton_python.so, triton_python_backend_utils.py,
#   triton_python_backend_stub}.
# Differences from NGC: Debian 12 instead of Ubuntu 22.04; no CUDA, no GPU backends (onnxruntime,
# TensorRT, ...): only the python backend; Python 3.11 is the system Python and the stub is the
# wheel's 3.11 build (NGC: a 3.10 stub, which triton.Dockerfile replaces by the same 3.11 build).
ARG BASE_IMAGE=mlsharp-ci/python:3.11
FROM ${BASE_IMAGE}
ARG PYTRITON_VERSION=0.7.0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The host's CA bundle arrives as a BuildKit secret (never a layer); pip's cache is a cache mount.
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python3 -m venv /tmp/w \
 && /tmp/w/bin/pip install --disable-pip-version-check -q --no-deps "nvidia-pytriton==${PYTRITON_VERSION}" \
 && sp=/tmp/w/lib/python3.11/site-packages \
 && mkdir -p /opt/tritonserver/lib \
 && cp -a "$sp/pytriton/tritonserver/bin" "$sp/pytriton/tritonserver/backends" "$sp/pytriton/tritonserver/caches" /opt/tritonserver/ \
 && cp -a "$sp"/nvidia_pytriton.libs/. /opt/tritonserver/lib/ \
 && install -m 0755 "$sp/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" \
      /opt/tritonserver/backends/python/triton_python_backend_stub \
 && rm -rf /tmp/w /opt/tritonserver/backends/python/__pycache__
ENV PATH=/opt/tritonserver/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/tritonserver/lib
# Fails the build if the server cannot load its libraries.
RUN if ldd /opt/tritonserver/bin/tritonserver | grep -q "not found"; then ldd /opt/tritonserver/bin/tritonserver; exit 1; fi
WORKDIR /opt/tritonserver
