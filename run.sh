#!/usr/bin/env bash
# Start-up script of the CAI demo (the image's entrypoint runs it under tini).
#  0. Started as root (the image's default, so that platforms whose fresh volumes are root-owned work:
#     Fly.io, Railway, Render): the two data folders are made and handed to the image's `app` user,
#     then this script re-runs itself as that user (setpriv). In the image the server never runs as
#     root: with an `app` user but no setpriv to drop to, this script stops (exit 2). Outside the image
#     (no `app` user: a developer's host, the unit tests) it goes on as the user it was started as.
#  1. The checkpoint and log folders (CHECKPOINT_DIR, LOG_DIR) exist or can be made, and are
#     writable by this user: a file is really written and removed. Else: a clear message, exit 2.
#  2. Memory: the container's limit (cgroup v2 memory.max or v1 memory.limit_in_bytes) and
#     MemAvailable, reported against the deployment plan's 8 GB. Below it: a warning, not a failure
#     (serving the default model needs about 1 GB; training it with LoRA needs a few GB more).
#  3. `exec python -m app "$@"`: the server replaces this shell, so SIGTERM from tini reaches it.
# Set PYTHON to use another interpreter (default: python from PATH, the venv's in the image).
set -euo pipefail

PLAN_MEMORY_MB=8192
PYTHON="${PYTHON:-python}"

say() { printf '[run.sh] %s\n' "$*" >&2; }
fail() { say "ERROR: $*"; exit 2; }

check_writable() {  # $1: what, $2: path
    local what="$1" dir="$2" probe
    if [ -e "$dir" ] && [ ! -d "$dir" ]; then
        fail "$what '$dir' exists but is not a directory."
    fi
    if ! mkdir -p -- "$dir" 2>/dev/null; then
        fail "$what '$dir' does not exist and cannot be created (as uid $(id -u)). Mount a writable volume there or set ${what} to a writable path."
    fi
    probe="$dir/.write-test.$$"
    if ! ( : >"$probe" ) 2>/dev/null; then
        fail "$what '$dir' is not writable by uid $(id -u) (owner: $(stat -c '%u:%g %A' -- "$dir" 2>/dev/null || echo '?')). Fix the volume's ownership (e.g. chown -R $(id -u):$(id -g)) or mount it read-write."
    fi
    rm -f -- "$probe"
    say "$what $dir: writable"
}

if [ "$(id -u)" -eq 0 ] && ! id app >/dev/null 2>&1; then
    say "WARNING: running as root with no user 'app' to drop to (not the image): the server runs as root."
elif [ "$(id -u)" -eq 0 ]; then
    if ! command -v setpriv >/dev/null 2>&1; then
        fail "started as root and setpriv is missing: refusing to run the server as root. Start as the app user (docker run --user $(id -u app)) or install util-linux."
    fi
    app_uid="$(id -u app)"; app_gid="$(id -g app)"
    for dir in "${CHECKPOINT_DIR:-demo/checkpoints}" "${LOG_DIR:-demo/logs}"; do
        mkdir -p -- "$dir" || fail "cannot create '$dir' (as root)."
        if [ "$(stat -c %u -- "$dir")" != "$app_uid" ]; then
            say "started as root: giving $dir to app ($app_uid:$app_gid)"
            chown -R "$app_uid:$app_gid" -- "$dir" || fail "cannot chown '$dir' to $app_uid:$app_gid."
        fi
    done
    say "started as root: continuing as app (uid $app_uid)"
    exec setpriv --reuid="$app_uid" --regid="$app_gid" --init-groups --inh-caps=-all \
        env HOME="$(getent passwd app | cut -d: -f6)" USER=app "$0" "$@"
fi

check_writable CHECKPOINT_DIR "${CHECKPOINT_DIR:-demo/checkpoints}"
check_writable LOG_DIR "${LOG_DIR:-demo/logs}"

# Memory: the smaller of the cgroup limit and the host's MemTotal is what the app can get.
mem_kb() { awk -v k="$1" '$1 == k":" {v = $2} END {print v + 0}' /proc/meminfo 2>/dev/null || echo 0; }
total_mb=$(( $(mem_kb MemTotal) / 1024 ))
avail_mb=$(( $(mem_kb MemAvailable) / 1024 ))
limit_mb=""
for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
    if [ -r "$f" ]; then
        raw=$(cat "$f" 2>/dev/null || true)
        if [[ "$raw" =~ ^[0-9]+$ ]] && [ "$raw" -lt $((1 << 50)) ]; then
            limit_mb=$(( raw / 1024 / 1024 ))
        fi
        break
    fi
done
if [ -n "$limit_mb" ] && { [ "$total_mb" -eq 0 ] || [ "$limit_mb" -lt "$total_mb" ]; }; then
    usable_mb=$limit_mb; source_desc="container limit ${limit_mb} MiB"
else
    usable_mb=$total_mb; source_desc="no container limit, host total ${total_mb} MiB"
fi
say "memory: ${source_desc}, MemAvailable ${avail_mb} MiB (plan: ${PLAN_MEMORY_MB} MiB)"
if [ "$usable_mb" -gt 0 ] && [ "$usable_mb" -lt "$PLAN_MEMORY_MB" ]; then
    say "WARNING: ${usable_mb} MiB is below the plan's ${PLAN_MEMORY_MB} MiB: serving the default model is fine, training may be killed (OOM)."
fi
if [ "$avail_mb" -gt 0 ] && [ "$avail_mb" -lt 1024 ]; then
    say "WARNING: only ${avail_mb} MiB available right now."
fi

say "starting: $PYTHON -m app $*"
exec "$PYTHON" -m app "$@"
