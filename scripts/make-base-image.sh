#!/usr/bin/env bash
# Build a Debian bookworm base image locally, for hosts that cannot reach a registry, tagged
# `cai-base:bookworm-slim` (its own name: it must not shadow the official debian:bookworm-slim that
# Fly and Railway build on). The gate passes it as the Dockerfile's BASE_IMAGE when present. The
# official debian:bookworm-slim is made the same way (debootstrap minbase + trimming).
#   - image already present           -> nothing to do (exit 0 at once)
#   - else: apt-get install debootstrap (if missing), debootstrap --variant=minbase bookworm,
#     trim docs/man/locales/apt lists/caches, `docker import` with ENV PATH and CMD bash.
# Idempotent. Needs root and a Docker engine (scripts/docker-engine.sh).
# Env: BASE_IMAGE (tag, default cai-base:bookworm-slim), DEBIAN_MIRROR (default debootstrap's own),
#      FORCE=1 to rebuild even when the tag exists.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-cai-base:bookworm-slim}"
SUITE="${SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '[make-base-image] %s\n' "$*" >&2; }

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE already present: nothing to do"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "debootstrap needs root"
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    log "no Docker engine answers: run scripts/docker-engine.sh first"
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

WORK="$(mktemp -d /var/tmp/make-base-image.XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

start=$SECONDS
log "debootstrap --variant=minbase $SUITE from $DEBIAN_MIRROR (about 30-60 s)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    log "debootstrap failed; last lines:"; tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }

log "trimming docs, man pages, locales, apt lists and caches"
# Keep the things images rely on: copyright files are dropped like the official slim images do
# for docs; apt works again after `apt-get update`.
rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/lintian "$ROOTFS"/usr/share/linda \
       "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
       "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
mkdir -p "$ROOTFS"/var/lib/apt/lists/partial "$ROOTFS"/var/log/apt
# The same dpkg excludes as the official slim image, so later apt installs stay trimmed too.
mkdir -p "$ROOTFS"/etc/dpkg/dpkg.cfg.d
cat >"$ROOTFS"/etc/dpkg/dpkg.cfg.d/docker <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
cat >"$ROOTFS"/etc/apt/apt.conf.d/docker-clean <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
printf 'Acquire::Languages "none";\n' >"$ROOTFS"/etc/apt/apt.conf.d/docker-no-languages
# Plain http mirror in sources (the container cannot verify this network's TLS).
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
    "$DEBIAN_MIRROR" "$SUITE" "$DEBIAN_MIRROR" "$SUITE" "$SUITE" >"$ROOTFS"/etc/apt/sources.list

log "importing as $BASE_IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE (scripts/make-base-image.sh)" \
    - "$BASE_IMAGE" >/dev/null
log "done in $((SECONDS - start)) s: $(docker image inspect --format '{{.Id}} {{.Size}} bytes' "$BASE_IMAGE")"
