"""Fixtures for the app's unit tests: settings on temp folders, one tiny model per session, and the
app in-process (FastAPI TestClient, UI mounted) serving it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import config

# The tiny model is built once into the repo's cache (gitignored) and reused across runs: the
# build is seeded and fingerprinted, so a changed recipe rebuilds it.
MODEL_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "models"


@pytest.fixture
def settings(tmp_path, monkeypatch) -> config.Settings:
    for var in [*config.ENV_VARS.values(), *config.EXTRA_ENV_VARS]:
        monkeypatch.delenv(var, raising=False)
    return config.load().model_copy(update=dict(model_cache_dir=MODEL_CACHE, model_dirs=(MODEL_CACHE, tmp_path / "models"),
                               checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs", preload=False))


@pytest.fixture(scope="session")
def tiny():
    from app import models
    s = config.Settings().model_copy(update=dict(model_cache_dir=MODEL_CACHE, model_dirs=(MODEL_CACHE,)))
    return models.load("tiny", s)


@pytest.fixture
def make_client(settings, tiny):
    from fastapi.testclient import TestClient

    from app.server import create_app
    from app.service import Service

    def make(with_model=True, **changes):
        s = settings.model_copy(update=changes)
        service = Service(s)
        service.open()
        if with_model:
            service.base, service.model_state = tiny, "ready"
        return TestClient(create_app(s, service), raise_server_exceptions=False)
    return make


@pytest.fixture
def client(make_client):
    with make_client() as c:
        yield c
