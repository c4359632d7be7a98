#!/usr/bin/env bash
# Build the throwaway Postgres image (default rollgate/postgres:18) from
# Debian packages, for machines that cannot pull from a registry:
#
#   1. mmdebstrap: a minimal Debian root filesystem with postgresql-$PG_MAJOR
#   2. docker import: that filesystem becomes the base image
#   3. docker build: Dockerfile + entrypoint.sh on top of the base
#   4. smoke test: start a container, wait for psql, check the major version
#
# Usage: bash db/throwaway/image/build.sh [--force [--reuse-base]]
#   --force        rebuild even if the image exists, base included
#   --reuse-base   with --force: keep the Debian base, rebuild only the top
#                  (seconds instead of ~45 s; for entrypoint/Dockerfile edits)
#
# Environment (all optional):
#   ROLLGATE_PG_IMAGE       image to build        (rollgate/postgres:$PG_MAJOR)
#   PG_MAJOR                PostgreSQL major      (18)
#   DEBIAN_SUITE            suite shipping it     (forky)
#   DEBIAN_MIRROR           apt mirror            (http://deb.debian.org/debian)
#   EXTRA_PACKAGES          extension packages    (pgvector, PostGIS, pgaudit,
#                           partman, cron, repack, hypopg for $PG_MAJOR)
#
# The image carries the extensions that RDS offers and Debian packages:
# contrib (in postgresql-$PG_MAJOR: pgcrypto, uuid-ossp, citext, hstore, ...),
# pgvector, PostGIS, pgaudit, pg_partman, pg_cron, pg_repack and hypopg. The
# Dockerfile marks those on rds_extensions.txt trusted (see there why).
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-18}"
DEBIAN_SUITE="${DEBIAN_SUITE:-forky}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE="${ROLLGATE_PG_IMAGE:-rollgate/postgres:${PG_MAJOR}}"
BASE_IMAGE="rollgate/postgres-base:${PG_MAJOR}-${DEBIAN_SUITE}"
EXTRA_PACKAGES="${EXTRA_PACKAGES:-postgresql-${PG_MAJOR}-pgvector postgresql-${PG_MAJOR}-postgis-3 postgresql-${PG_MAJOR}-postgis-3-scripts postgresql-${PG_MAJOR}-pgaudit postgresql-${PG_MAJOR}-partman postgresql-${PG_MAJOR}-cron postgresql-${PG_MAJOR}-repack postgresql-${PG_MAJOR}-hypopg}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

force=0
reuse_base=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        --reuse-base) reuse_base=1 ;;
        -h | --help) sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '==> [%3ds] %s\n' "$SECONDS" "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 2; }

# --- preflight: say what is missing and how to get it -----------------------
command -v docker >/dev/null || die "docker not found: apt-get install -y docker.io"
docker info >/dev/null 2>&1 \
    || die "the Docker daemon is not reachable: start it (dockerd >/var/log/dockerd.log 2>&1 &) and retry"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

if image_exists "$IMAGE" && [[ $force -eq 0 ]]; then
    step "$IMAGE already exists; nothing to do (--force rebuilds it)"
    exit 0
fi

# With --force the old images lose their tags; remember them to delete them
# at the end instead of leaving ~240 MB of dangling layers per rebuild.
superseded=("$(image_id "$IMAGE")")
[[ $reuse_base -eq 1 ]] || superseded+=("$(image_id "$BASE_IMAGE")")

# --- 1+2. base image from Debian packages -----------------------------------
if image_exists "$BASE_IMAGE" && [[ $force -eq 0 || $reuse_base -eq 1 ]]; then
    step "reusing base image $BASE_IMAGE (--force without --reuse-base rebuilds it)"
else
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install -y mmdebstrap"
    workdir="$(mktemp -d "${TMPDIR:-/tmp}/rollgate-pg-image.XXXXXX")"
    # The root filesystem tarball is ~300 MB: never leave it behind.
    trap 'rm -rf "$workdir"' EXIT

    step "mmdebstrap: Debian $DEBIAN_SUITE + postgresql-$PG_MAJOR $EXTRA_PACKAGES from $DEBIAN_MIRROR"
    # Check-Valid-Until: local mirrors serve Release files past their expiry.
    # The hook stops postgresql-common from creating a "main" cluster we
    # would never use. Docs, man pages and translations are dead weight.
    mmdebstrap --variant=apt \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/rollgate.conf"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --include="postgresql-${PG_MAJOR}${EXTRA_PACKAGES:+,${EXTRA_PACKAGES// /,}}" \
        "$DEBIAN_SUITE" "$workdir/rootfs.tar" "deb $DEBIAN_MIRROR $DEBIAN_SUITE main"
    step "rootfs: $(du -h "$workdir/rootfs.tar" | cut -f1)"

    step "docker import -> $BASE_IMAGE"
    docker import "$workdir/rootfs.tar" "$BASE_IMAGE" >/dev/null
    rm -rf "$workdir"
    trap - EXIT
fi

# --- 3. the image ------------------------------------------------------------
step "docker build -> $IMAGE"
docker build \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PG_MAJOR=$PG_MAJOR" \
    --tag "$IMAGE" "$HERE"

# --- 4. smoke test: exactly what PostgresContainer will do -------------------
step "smoke test: start a container and wait for psql -h 127.0.0.1"
name="rollgate-pg-smoke-$$"
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
docker run --detach --name "$name" --label rollgate.build-smoke=1 \
    -e POSTGRES_USER=smoke -e POSTGRES_PASSWORD="$password" -e POSTGRES_DB=smoke \
    "$IMAGE" >/dev/null
trap 'docker rm --force --volumes "$name" >/dev/null 2>&1 || true' EXIT
version=""
for _ in $(seq 1 300); do
    if version="$(docker exec -e PGPASSWORD="$password" "$name" \
        psql --username smoke --dbname smoke --host 127.0.0.1 -XAtc 'SHOW server_version_num' 2>/dev/null)"; then
        break
    fi
    version=""
    sleep 0.1
done
if [[ -z "$version" ]]; then
    docker logs "$name" >&2 || true
    die "smoke test failed: $IMAGE did not answer psql within 30 s (its log is above)"
fi
if [[ "$((version / 10000))" != "$PG_MAJOR" ]]; then
    die "smoke test failed: $IMAGE runs PostgreSQL $version, expected major $PG_MAJOR"
fi
# server_version_num is MMmmpp (180006); people read 18.6.
step "built $IMAGE: PostgreSQL $((version / 10000)).$((version % 10000)) ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
for old in "${superseded[@]}"; do
    # Fails harmlessly when the ID is still tagged or used by a container.
    [[ -n "$old" ]] && docker image rm "$old" >/dev/null 2>&1 || true
done
