#!/usr/bin/env bash
# Make sure a Docker engine answers on this host (Debian bookworm, run as root, no systemd).
#   - `docker info` answers            -> nothing to do (exit 0 at once)
#   - dockerd missing                  -> apt-get install docker.io
#   - dockerd not running              -> setsid dockerd (log: $DOCKERD_LOG), poll up to $DOCKER_WAIT_S s
# Idempotent: safe to run any number of times. Exit 1 with a message when the engine does not come up.
set -euo pipefail

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKER_WAIT_S="${DOCKER_WAIT_S:-60}"

log() { printf '[docker-engine] %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
    log "engine already answers: nothing to do"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        log "dockerd is not installed and this is not root: install docker.io (apt) first"
        exit 1
    fi
    log "dockerd not found: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! command -v docker >/dev/null 2>&1; then
    log "no docker client on PATH after install"
    exit 1
fi

if pgrep -x dockerd >/dev/null 2>&1; then
    log "dockerd is running but not answering yet: waiting"
else
    log "starting dockerd (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    setsid dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
fi

for ((i = 0; i < DOCKER_WAIT_S * 2; i++)); do
    if docker info >/dev/null 2>&1; then
        log "engine answers after $((i / 2)) s ($(docker info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null))"
        exit 0
    fi
    sleep 0.5
done
log "engine did not answer within ${DOCKER_WAIT_S} s; last lines of $DOCKERD_LOG:"
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
