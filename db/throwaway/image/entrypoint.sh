#!/bin/bash
# Entrypoint of rollgate/postgres: a throwaway PostgreSQL server built from
# Debian packages, and a drop-in for testcontainers' PostgresContainer.
#
# * Honours POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required) and
#   POSTGRES_DB (default: $POSTGRES_USER), like the official image, plus
#   POSTGRES_INITDB_ARGS for extra initdb flags.
# * initdb runs as the postgres OS user; TCP connections need the password
#   (scram-sha-256), the unix socket inside the container is trusted.
# * Listens on all interfaces on 5432 inside the container, so
#   `psql -h 127.0.0.1` (PostgresContainer's readiness probe) and the mapped
#   port both work.
# * Durability is off (fsync, synchronous_commit, full_page_writes): the data
#   dies with the container, and throwaway servers are all about speed.
# * wal_level = logical with replication slots and WAL senders, so logical
#   decoding (issue 13's rollback replay) works on the throwaway server too.
# * shared_preload_libraries carries pg_stat_statements, pgaudit and pg_cron
#   when the image ships them, as an RDS parameter group would.
# * Ends by exec'ing postgres, so the postmaster is PID 1 and receives docker's
#   stop signal directly (the Dockerfile sets STOPSIGNAL SIGINT: fast shutdown).
set -euo pipefail

PG_MAJOR="${PG_MAJOR:?PG_MAJOR is set by the Dockerfile}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
SOCKET_DIR=/var/run/postgresql
export PGDATA

log() { printf 'rollgate-entrypoint: %s\n' "$*" >&2; }

# PID 1 gets no default signal handlers: without this trap a `docker stop`
# during initdb would hang until docker's SIGKILL.
trap 'log "stopped during initialisation"; exit 143' TERM INT

# Anything other than "postgres ..." (e.g. `docker run IMAGE bash`) runs as is.
if [[ "${1:-postgres}" != postgres ]]; then
    exec "$@"
fi
if [[ $# -eq 0 ]]; then
    set -- postgres
fi

# As root: prepare directories, then re-exec this script as postgres.
# setpriv execs in place (unlike su/runuser, which fork and stay the parent),
# so postgres still ends up as PID 1.
if [[ "$(id -u)" == 0 ]]; then
    install -d -m 0700 -o postgres -g postgres "$PGDATA"
    install -d -m 2775 -o postgres -g postgres "$SOCKET_DIR"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    POSTGRES_USER="${POSTGRES_USER:-postgres}"
    POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    if [[ -z "${POSTGRES_PASSWORD:-}" ]]; then
        log "POSTGRES_PASSWORD is empty: set it (TCP connections need a password)"
        exit 1
    fi

    log "initdb: superuser ${POSTGRES_USER}, database ${POSTGRES_DB}"
    # --no-sync: flushing a data directory that dies with the container is
    # pure cost (about a quarter of initdb's time).
    # The password goes through a pipe, never through argv (visible in ps).
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list on purpose
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync --no-instructions \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null

    # initdb only admits 127.0.0.1 and ::1 over TCP; connections through the
    # mapped port arrive from the docker bridge.
    printf '%s\n' \
        '# rollgate: password auth from anywhere (the container is throwaway)' \
        'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
    cat >>"$PGDATA/postgresql.conf" <<CONF

# --- rollgate throwaway settings ---
listen_addresses = '*'
port = 5432
unix_socket_directories = '$SOCKET_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
CONF
    preload=()
    for library in pg_stat_statements pgaudit pg_cron; do
        if [[ -f "/usr/lib/postgresql/$PG_MAJOR/lib/$library.so" ]]; then
            preload+=("$library")
        fi
    done
    if [[ ${#preload[@]} -gt 0 ]]; then
        (IFS=,; printf "shared_preload_libraries = '%s'\n" "${preload[*]}") >>"$PGDATA/postgresql.conf"
    fi

    if [[ "$POSTGRES_DB" != postgres ]]; then
        # Single-user mode creates the database without starting a server
        # (saves a start/stop cycle); ON_ERROR_STOP-like behaviour comes from
        # checking for ERROR in its output, as it exits 0 either way.
        quoted_db="\"${POSTGRES_DB//\"/\"\"}\""
        output="$(printf 'CREATE DATABASE %s;\n' "$quoted_db" \
            | postgres --single -j -D "$PGDATA" postgres 2>&1)"
        if grep -q 'ERROR' <<<"$output"; then
            log "could not create database ${POSTGRES_DB}: ${output}"
            exit 1
        fi
    fi
    log "initialised ${PGDATA}"
fi

trap - TERM INT
exec "$@"
