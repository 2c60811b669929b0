"""`python -m app` serves the app (settings from the environment: see app/config.py, .env.example).
`python -m app build-models [NAME ...]` builds registry models (smollm2, tiny, gpt2-sized) into MODEL_CACHE_DIR
and exports smollm2 for the engine (OPENVINO_EXPORTER, app/engine.py)."""

from __future__ import annotations

import logging
import os
import sys

# Quiet, offline-safe defaults for the libraries, set before they are imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str]) -> int:
    from app import config, logs

    try:
        settings = config.load()
    except config.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_dir, settings.log_level)
    import transformers
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    if argv[:1] == ["build-models"]:
        from app import models
        return models.main(["build", *argv[1:]])
    if argv:
        print(__doc__, file=sys.stderr)
        return 2

    import uvicorn

    from app.errors import ApiError
    from app.server import create_app
    from app.service import Service

    service = Service(settings)
    try:
        service.open()
    except ApiError as exc:  # DATABASE_URL names a database it cannot use
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 2
    app = create_app(settings, service)
    if settings.preload:
        service.preload()
    logging.getLogger("app").info("serving", extra={"host": settings.host, "port": settings.port,
                                                    "auth": bool(settings.auth)})
    # Client addresses (the rate limit's key) come from X-Forwarded-For only when the peer is one of
    # FORWARDED_ALLOW_IPS; uvicorn's own default would trust 127.0.0.1, so a local hop passing the
    # header on would let any client name a fresh address per request.
    server = uvicorn.Server(uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=5, proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None))
    import torch
    torch.set_num_threads(settings.compute_threads)  # the plain transformers path; training sets its own
    server.run()  # until SIGTERM/SIGINT: uvicorn stops gracefully
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
