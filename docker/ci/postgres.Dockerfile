# CI stand-in for postgres:16-bookworm: Debian's PostgreSQL 15 on the local Debian base, with an
# entry point that honours the official image's POSTGRES_USER/PASSWORD/DB on first start.
ARG BASE_IMAGE=mlsharp-ci/debian:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data \
 && chown postgres:postgres /var/lib/postgresql/data \
 && chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:${PATH} \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
# DL3066: Debian's package creates this user, its uid is not fixed in advance.
# hadolint ignore=DL3066
USER postgres
ENTRYPOINT ["/bin/sh", "/usr/local/bin/postgres-entrypoint.sh"]
