#!/usr/bin/env bash
# Measure the image against issue 3's targets; prints one "name: value" line per measurement.
#   image size (<= 1.5 GB), code-only rebuild (<= 60 s), docker run -> /health 200 (<= 10 s),
#   idle memory with the default model loaded (<= 600 MB), stop after SIGTERM (<= 10 s).
# Cold build time: run with COLD=1 (docker build --no-cache; takes minutes).
# Env: IMAGE (default cai-demo:latest), DEPS_SOURCE (default wheelhouse).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${IMAGE:-cai-demo:latest}"
DEPS_SOURCE="${DEPS_SOURCE:-wheelhouse}"
log() { printf '[measure] %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

if [ "${COLD:-0}" = 1 ]; then
    log "cold build (--no-cache; base image and wheelhouse present)"
    t=$(now); docker build -q --no-cache --build-arg DEPS_SOURCE="$DEPS_SOURCE" -t "$IMAGE" "$ROOT" >/dev/null
    echo "cold_build_s: $(since "$t")"
fi

log "code-only rebuild: a copy of the build context with one changed line in app/server.py"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp -a "$ROOT/Dockerfile" "$ROOT/.dockerignore" "$ROOT/run.sh" "$ctx/"
mkdir -p "$ctx/requirements" && cp -a "$ROOT/requirements/app.lock" "$ctx/requirements/"
cp -a "$ROOT/app" "$ctx/app"
[ -d "$ROOT/wheelhouse" ] && cp -al "$ROOT/wheelhouse" "$ctx/wheelhouse" 2>/dev/null || cp -a "$ROOT/wheelhouse" "$ctx/wheelhouse" 2>/dev/null || true
find "$ctx/app" -name __pycache__ -prune -exec rm -rf {} +
docker build -q --build-arg DEPS_SOURCE="$DEPS_SOURCE" -t cai-demo:measure "$ctx" >/dev/null   # warm: all cached
printf '\n# code-only change %s\n' "$(date +%s%N)" >>"$ctx/app/server.py"
t=$(now); docker build --build-arg DEPS_SOURCE="$DEPS_SOURCE" -t cai-demo:measure "$ctx" >"$ctx.log" 2>&1
echo "code_only_rebuild_s: $(since "$t")"
echo "code_only_rebuild_cached_steps: $(grep -c 'Using cache' "$ctx.log")/$(grep -c '^Step ' "$ctx.log")"
rm -f "$ctx.log"
docker rmi cai-demo:measure >/dev/null 2>&1 || true

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
echo "image_size_bytes: $size ($(awk -v s="$size" 'BEGIN {printf "%.2f GB", s / 1e9}'))"

name="cai-measure-$$"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
t=$(now)
docker run -d --name "$name" -p "127.0.0.1:$port:7860" "$IMAGE" >/dev/null
until curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    sleep 0.1
    if awk -v a="$t" -v b="$(now)" 'BEGIN {exit !(b - a > 120)}'; then echo "health: no 200 within 120 s"; break; fi
done
echo "run_to_health_200_s: $(since "$t")"
until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do sleep 0.2; done
echo "run_to_ready_200_s: $(since "$t")"
sleep 15
echo "idle_memory_default_model: $(docker stats --no-stream --format '{{.MemUsage}}' "$name")"
t=$(now); docker stop -t 30 "$name" >/dev/null
echo "sigterm_stop_s: $(since "$t") (exit code $(docker inspect -f '{{.State.ExitCode}}' "$name"); 137 would mean killed)"
docker rm -v "$name" >/dev/null
