# CI stand-in for prom/prometheus: Debian's prometheus package (server and promtool).
ARG BASE_IMAGE=mlsharp-ci/debian:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
# DL3066: Debian's package creates this user, its uid is not fixed in advance.
# hadolint ignore=DL3066
USER prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
