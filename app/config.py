"""Every setting of the app, read once from the environment (pydantic-settings).

Each field's environment variable is its alias below: its name in upper case, but the platform's
own names (``PORT``, which wins over ``GRADIO_SERVER_PORT``, and the ``GRADIO_*`` names). An empty
variable means the default. `.env.example` lists them all with a comment each; a test keeps the two
in step.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(ValueError):
    """A setting in the environment has a value the app cannot use."""


def _env(default, name: str, *, first: str | None = None, **constraints):
    """A field read from `name` (or from `first` when that is set: PORT before GRADIO_SERVER_PORT)."""
    alias = AliasChoices(first, name) if first else name
    return Field(default, validation_alias=alias, **constraints)


Lower = BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
Folder = Annotated[Path, BeforeValidator(lambda v: Path(v).expanduser() if isinstance(v, str) else v)]


def _folders(value):
    """MODEL_DIRS: folders separated by os.pathsep (":" on Linux)."""
    if isinstance(value, str):
        return tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p.strip())
    return value


SEED_MAX = 2**31 - 1  # a seed's range, here, in the API (app/schemas.py) and in the UI's checks (app/service.py)

class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, str_strip_whitespace=True,
                                      populate_by_name=True, extra="ignore")

    # Network: PORT (injected by Cloud Run / Railway) wins over GRADIO_SERVER_PORT.
    host: str = _env("127.0.0.1", "GRADIO_SERVER_NAME")
    port: int = _env(7860, "GRADIO_SERVER_PORT", first="PORT", ge=1, le=65535)
    # Models
    default_model: str = _env("smollm2", "DEFAULT_MODEL")
    preload: bool = _env(True, "PRELOAD_MODEL")
    model_cache_dir: Folder = _env(Path("demo/models"), "MODEL_CACHE_DIR")
    allow_downloads: bool = _env(False, "ALLOW_MODEL_DOWNLOADS")
    judge_model: str = _env("", "JUDGE_MODEL")
    device: Annotated[Literal["auto", "cpu", "cuda", "mps"], Lower] = _env("auto", "DEVICE")
    # torch threads per op for fine-tuning and the plain transformers path; 0: one less than the
    # cores this process may use, at least 1 (see `compute_threads`).
    torch_threads: int = _env(0, "TORCH_THREADS", ge=0, le=256)
    # Serving: "openvino" (a model with an OpenVINO export is served by OpenVINO GenAI, app/engine.py;
    # the default model must have one) or "transformers" (every model on the plain path).
    engine: Annotated[Literal["openvino", "transformers"], Lower] = _env("openvino", "ENGINE")
    # A Python with optimum-intel (requirements/export.lock) for `build-models` to export with; empty: none
    openvino_exporter: str = _env("", "OPENVINO_EXPORTER")
    # Data on volumes
    checkpoint_dir: Folder = _env(Path("demo/checkpoints"), "CHECKPOINT_DIR")
    log_dir: Folder = _env(Path("demo/logs"), "LOG_DIR")
    # Folders a model may be loaded from by path; empty: the model cache and the runs' checkpoints (after
    # checkpoint_dir: its default is made from it).
    model_dirs: Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_folders)] = _env((), "MODEL_DIRS")
    # Shared state: with a postgresql:// URL, training runs and their files live in Postgres (app/pgstore.py)
    database_url: str = _env("", "DATABASE_URL", pattern=r"^$|^(postgresql|postgres)://")
    replica_id: str = _env(socket.gethostname(), "REPLICA_ID")  # the owner of this replica's runs
    # Set by Fly.io on each machine: the UI's session affinity across machines (app/affinity.py)
    fly_machine_id: str = _env("", "FLY_MACHINE_ID", pattern=r"^[0-9a-z]{0,32}$")
    # Behaviour
    seed: int = _env(42, "SEED", ge=0, le=SEED_MAX)
    max_text_chars: int = _env(4000, "MAX_TEXT_CHARS", ge=1, le=1_000_000)
    max_new_tokens_limit: int = _env(512, "MAX_NEW_TOKENS_LIMIT", ge=1, le=4096)
    max_body_bytes: int = _env(262144, "MAX_BODY_BYTES", ge=1024, le=64 * 2**20)
    # Security
    basic_auth: str = _env("", "BASIC_AUTH")  # user:password
    rate_limit_per_minute: int = _env(0, "RATE_LIMIT_PER_MINUTE", ge=0, le=10**6)
    forwarded_allow_ips: str = _env("", "FORWARDED_ALLOW_IPS")  # proxies whose X-Forwarded-For names the client
    # Gradio queue
    queue_concurrency: int = _env(4, "GRADIO_CONCURRENCY", ge=1, le=64)
    queue_max_size: int = _env(64, "GRADIO_MAX_QUEUE", ge=1, le=10_000)
    log_level: Annotated[str, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)] = _env("INFO", "LOG_LEVEL")

    @field_validator("basic_auth")
    @classmethod
    def _user_password(cls, value: str) -> str:
        if value and ":" not in value:
            raise ValueError("must be user:password")
        return value

    @field_validator("model_dirs", mode="after")
    @classmethod
    def _default_model_dirs(cls, value, info):
        if value:
            return value
        return (info.data["model_cache_dir"], info.data["checkpoint_dir"] / "runs")

    @property
    def auth(self) -> tuple[str, str] | None:
        if not self.basic_auth:
            return None
        user, _, password = self.basic_auth.partition(":")
        return user, password

    @property
    def compute_threads(self) -> int:
        """torch threads for fine-tuning and the plain transformers path. By default one core is
        left for the HTTP server, the judge and the engine's pipelines."""
        return self.torch_threads or max(1, len(os.sched_getaffinity(0)) - 1)



def _alias(field) -> tuple[str, ...]:
    a = field.validation_alias
    return tuple(a.choices) if isinstance(a, AliasChoices) else (a,)


# Names of the environment variables, by field (the single list `.env.example` mirrors), and the
# ones read first where a platform has its own name (PORT).
ENV_VARS = {name: _alias(f)[-1] for name, f in Settings.model_fields.items()}
EXTRA_ENV_VARS = tuple(v for f in Settings.model_fields.values() for v in _alias(f)[:-1])

# The build this code is (GET /health "build"): the image sets BUILD_ID from its BUILD_ID build arg (the git
# sha). A fact of the build, not a setting: not in Settings nor in .env.example, whose copy passed with
# `docker run --env-file` would override the image's value.
BUILD_ID_VAR = "BUILD_ID"
BUILD_ID_DEFAULT = "dev"


def build_id() -> str:
    return os.environ.get(BUILD_ID_VAR, "").strip() or BUILD_ID_DEFAULT


def load() -> Settings:
    """Read the settings from the environment; raise SettingsError naming a bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else ""  # pydantic names the variable (an alias)
        names = next((_alias(f) for f in Settings.model_fields.values() if where in _alias(f)), (where,))
        var = next((n for n in names if os.environ.get(n, "").strip()), names[-1])
        raise SettingsError(f"{var}={os.environ.get(var, '')!r}: {first['msg']}") from None
