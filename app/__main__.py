"""`python -m app` serves the app; `python -m app build-models [NAME ...]` builds registry models
into MODEL_CACHE_DIR (the image does this at build time, so the container needs no network)."""

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
        for name in argv[1:] or ["tiny"]:
            if name not in models.REGISTRY:
                print(f"unknown model {name!r}; registry: {', '.join(models.REGISTRY)}", file=sys.stderr)
                return 2
            print(f"built {name} in {models.ensure_built(name, settings.model_cache_dir)}", flush=True)
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2

    import uvicorn

    from app.server import create_app
    from app.service import Service

    service = Service(settings)
    service.open()
    app = create_app(settings, service)
    if settings.preload:
        service.preload()
    logging.getLogger("app").info("serving", extra={"host": settings.host, "port": settings.port,
                                                    "auth": bool(settings.auth)})
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
