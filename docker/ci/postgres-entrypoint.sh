#!/bin/sh
# Entry point of the CI PostgreSQL stand-in: on an empty data folder, initdb with the official
# image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB (password auth over TCP), then run
# postgres with the container's arguments (e.g. -p PORT -c listen_addresses=127.0.0.1).
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"  # the official image's default
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > "$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  if [ "$POSTGRES_DB" != "postgres" ]; then  # as the official image: only `postgres` exists
    postgres -D "$PGDATA" -c listen_addresses='' -k /tmp &
    pid=$!
    until pg_isready -h /tmp -q; do sleep 0.2; done
    createdb -h /tmp -U "$POSTGRES_USER" "$POSTGRES_DB"
    kill -INT "$pid"
    wait "$pid"
  fi
fi
exec postgres -D "$PGDATA" -k /tmp "$@"
