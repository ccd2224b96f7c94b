# CI stand-in for redis:7-alpine: Debian's redis-server (and redis-cli) on the local Debian base.
ARG BASE_IMAGE=mlsharp-ci/debian:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
# DL3066: Debian's package creates this user, its uid is not fixed in advance.
# hadolint ignore=DL3066
USER redis
CMD ["redis-server"]
