# Steps the image build scripts share (app/image/build.sh, tools/image/build.sh).
# Sourced, not run: it defines functions and changes nothing by itself.
# Both images build the same way: wheels on the host, `docker build` without
# network over a staged context, then a smoke test of the result.

step() { printf '==> [%3ds] %s\n' "$SECONDS" "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 2; }

# require_docker_and_pip PIP: Docker answers and a pip was found.
require_docker_and_pip() {
    command -v docker >/dev/null || die "docker not found: apt-get install -y docker.io"
    docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable: start dockerd and retry"
    [[ -n "$1" ]] || die "no pip found: run scripts/setup or set PIP=/path/to/pip"
}

# stage_rds_ca_bundle CONTEXT REPO PYTHON DOCKERFILE: write the CA placeholder, and
# with $RDS_CA_BUNDLE copy the bundle where infra.outputs.RDS_CA_BUNDLE_PATH says
# (the task definitions point PGSSLROOTCERT there; DOCKERFILE's COPY must agree).
stage_rds_ca_bundle() {
    local context=$1 repo=$2 python=$3 dockerfile=$4 ca_path
    echo "RDS CA bundle goes here (set RDS_CA_BUNDLE when building)." \
        > "$context/certs/rollgate-rds-ca.README"
    [[ -n "${RDS_CA_BUNDLE:-}" ]] || return 0
    [[ -f "$RDS_CA_BUNDLE" ]] || die "RDS_CA_BUNDLE=$RDS_CA_BUNDLE: no such file"
    ca_path="$(cd "$repo" && "$python" -c \
        'from infra.outputs import RDS_CA_BUNDLE_PATH; print(RDS_CA_BUNDLE_PATH)')"
    [[ "$(dirname "$ca_path")" == /etc/ssl/certs ]] \
        || die "infra.outputs.RDS_CA_BUNDLE_PATH moved to $ca_path: update $dockerfile's COPY"
    cp "$RDS_CA_BUNDLE" "$context/certs/$(basename "$ca_path")"
    step "baking in the RDS CA bundle at $ca_path"
}

# build_offline CONTEXT IMAGE BASE_IMAGE: docker build with no network at all.
build_offline() {
    step "docker build --network none -> $2"
    docker build --quiet --network none --build-arg "BASE_IMAGE=$3" --tag "$2" "$1" >/dev/null
}

# require_non_root IMAGE: the image runs as uid 10001 on a read-only root.
require_non_root() {
    local user
    user="$(docker run --rm --read-only --tmpfs /tmp "$1" id -u)"
    [[ "$user" == "10001" ]] || die "smoke test failed: runs as uid $user, expected 10001"
}
