#!/bin/sh
# Entrypoint of the locally built Postgres image (infra/scripts/build-base-images.sh), compatible with the official
# image's: on an empty PGDATA, initdb with POSTGRES_PASSWORD, run /docker-entrypoint-initdb.d/*.sql|*.sh, then serve.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${POSTGRES_PASSWORD:-}" ] || { echo 'POSTGRES_PASSWORD is required to initialise the database' >&2; exit 1; }
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  # Initialisation listens on the socket only, so a TCP health check passes only once it is done.
  pg_ctl --wait --silent -o "-c listen_addresses=''" start
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) echo "running $f" >&2; psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username="${POSTGRES_USER:-postgres}" --dbname=postgres -f "$f" ;;
      *.sh) echo "running $f" >&2; . "$f" ;;
      *) ;;
    esac
  done
  pg_ctl --wait --silent -m fast stop
  echo 'database initialised' >&2
fi

exec "$@"
