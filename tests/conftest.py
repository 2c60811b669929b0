"""Fixtures for the app's unit tests: settings on temp folders and one tiny model per session."""

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
