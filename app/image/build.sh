#!/usr/bin/env bash
# Build the workflow service's image (default rollgate/app:dev) without pulling
# anything and without network during `docker build`:
#
#   1. mmdebstrap: a minimal Debian bookworm root filesystem with python3
#      (3.11, the host's, so wheels built here install there) -> base image
#   2. pip wheel (on the host): every dependency as a wheel, pinned by
#      requirements/constraints.txt
#   3. docker build --network none: app/Dockerfile over a staged context
#      (wheelhouse, app/, core/, infra/outputs.py, the CA bundle if given)
#   4. smoke test: the image imports the app and refuses to start without
#      settings (exit 2, one line), as a non-root user on a read-only root
#
# Usage: bash app/image/build.sh [--force]      (--force rebuilds the Debian base too)
#
# Environment (all optional):
#   ROLLGATE_APP_IMAGE   image to build           (rollgate/app:dev)
#   DEBIAN_MIRROR        apt mirror               (http://deb.debian.org/debian)
#   RDS_CA_BUNDLE        path to RDS's global-bundle.pem
#                        (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem);
#                        baked in at infra.outputs.RDS_CA_BUNDLE_PATH, where the task
#                        definitions point PGSSLROOTCERT (sslmode=verify-full)
set -euo pipefail

IMAGE="${ROLLGATE_APP_IMAGE:-rollgate/app:dev}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="rollgate/app-base:bookworm"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PIP="${PIP:-$REPO/.venv/bin/pip}"
[[ -x "$PIP" ]] || PIP="$(command -v pip3 || true)"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=../../scripts/lib/image-build.sh
source "$REPO/scripts/lib/image-build.sh"
require_docker_and_pip "$PIP"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/rollgate-app-image.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT

# --- 1. base image from Debian packages ----------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && [[ $force -eq 0 ]]; then
    step "reusing base image $BASE_IMAGE (--force rebuilds it)"
else
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install -y mmdebstrap"
    step "mmdebstrap: Debian bookworm + python3 from $DEBIAN_MIRROR"
    mmdebstrap --variant=apt \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --include=python3,python3-venv,ca-certificates \
        bookworm "$workdir/rootfs.tar" "deb $DEBIAN_MIRROR bookworm main"
    step "docker import -> $BASE_IMAGE"
    docker import "$workdir/rootfs.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$workdir/rootfs.tar"
fi

# --- 2. wheels, built on the host ----------------------------------------------
context="$workdir/context"
mkdir -p "$context/wheelhouse" "$context/src/infra" "$context/certs"
# The app's runtime dependencies only (pyproject's optional group `app`, plus
# psycopg and boto3), at the versions the tests ran against.
cat > "$context/requirements.txt" <<REQ
fastapi
uvicorn
stripe
structlog
aws-embedded-metrics
psycopg-pool
psycopg[binary]
boto3
REQ
step "pip wheel -> wheelhouse (pinned by requirements/constraints.txt)"
"$PIP" wheel --quiet --disable-pip-version-check --wheel-dir "$context/wheelhouse" \
    -c "$REPO/requirements/constraints.txt" -r "$context/requirements.txt" \
    2> >(grep -v "^WARNING: Location" >&2)

# --- 3. the image ----------------------------------------------------------------
cp -r "$REPO/app" "$REPO/core" "$context/src/"
cp "$REPO/infra/__init__.py" "$REPO/infra/outputs.py" "$context/src/infra/"
find "$context/src" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$context/src/app/image"
cp "$REPO/app/Dockerfile" "$context/Dockerfile"
stage_rds_ca_bundle "$context" "$REPO" "$REPO/.venv/bin/python" app/Dockerfile
build_offline "$context" "$IMAGE" "$BASE_IMAGE"

# --- 4. smoke test -----------------------------------------------------------------
step "smoke test: non-root, read-only root, refuses to start without settings"
require_non_root "$IMAGE"
set +e
out="$(docker run --rm --read-only --tmpfs /tmp --network none "$IMAGE" python -m app worker 2>&1)"
rc=$?
set -e
[[ $rc -eq 2 && "$out" == "app worker: cannot start: "* ]] \
    || die "smoke test failed: expected exit 2 and one 'cannot start' line, got $rc: $out"
step "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
