"""Every setting of the app, read once from the environment.

Each field's environment variable is its name in upper case (``PORT`` and the ``GRADIO_*``
names are the platform's own). `.env.example` lists them all with a comment each; a test keeps
the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


class SettingsError(ValueError):
    """A setting in the environment has a value the app cannot use."""


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside {lo}..{hi}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (true/false)")


def _str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _paths(name: str, default: str) -> tuple[Path, ...]:
    raw = _str(name, default)
    return tuple(Path(p).expanduser() for p in raw.split(os.pathsep) if p)


@dataclass(frozen=True)
class Settings:
    # Network: PORT (injected by Cloud Run / Railway) wins over GRADIO_SERVER_PORT.
    host: str = "127.0.0.1"
    port: int = 7860
    # Models
    default_model: str = "smollm2"
    preload: bool = True
    model_cache_dir: Path = Path("demo/models")
    model_dirs: tuple[Path, ...] = ()
    allow_downloads: bool = False
    judge_model: str = ""
    device: str = "auto"
    # torch threads per op for decoding (the engine, app/generation.py) and fine-tuning; 0: one less
    # than the cores this process may use, at least 1 (see `compute_threads`).
    torch_threads: int = 0
    # Serving layout of a bf16 model's linear layers on CPU: "int8" weights or "none" (bf16; app/packing.py)
    quantize: str = "int8"
    # Data on volumes
    checkpoint_dir: Path = Path("demo/checkpoints")
    log_dir: Path = Path("demo/logs")
    # Behaviour
    seed: int = 42
    max_text_chars: int = 4000
    max_new_tokens_limit: int = 512
    max_body_bytes: int = 262144
    # Security
    basic_auth: str = ""
    rate_limit_per_minute: int = 0
    forwarded_allow_ips: str = ""  # proxies whose X-Forwarded-For names the client (uvicorn's setting)
    # Gradio queue
    queue_concurrency: int = 4
    queue_max_size: int = 64
    log_level: str = "INFO"

    @property
    def auth(self) -> tuple[str, str] | None:
        if not self.basic_auth:
            return None
        user, _, password = self.basic_auth.partition(":")
        return user, password

    @property
    def compute_threads(self) -> int:
        """torch threads for the decoding engine and for fine-tuning. By default one core is left
        for the HTTP server and the judge. Measured on 2 cores (SmolLM2-135M
        bf16, a step of 2 rows): 1 thread 42 ms with one core busy; 2 threads 34 ms with both cores
        busy (idle OpenMP threads spin) or 50-59 ms when idle threads sleep at once."""
        return self.torch_threads or max(1, len(os.sched_getaffinity(0)) - 1)


# Names of the environment variables, by field (the single list `.env.example` mirrors).
ENV_VARS = {
    "host": "GRADIO_SERVER_NAME",
    "port": "GRADIO_SERVER_PORT",
    "default_model": "DEFAULT_MODEL",
    "preload": "PRELOAD_MODEL",
    "model_cache_dir": "MODEL_CACHE_DIR",
    "model_dirs": "MODEL_DIRS",
    "allow_downloads": "ALLOW_MODEL_DOWNLOADS",
    "judge_model": "JUDGE_MODEL",
    "device": "DEVICE",
    "torch_threads": "TORCH_THREADS",
    "quantize": "QUANTIZE",
    "checkpoint_dir": "CHECKPOINT_DIR",
    "log_dir": "LOG_DIR",
    "seed": "SEED",
    "max_text_chars": "MAX_TEXT_CHARS",
    "max_new_tokens_limit": "MAX_NEW_TOKENS_LIMIT",
    "max_body_bytes": "MAX_BODY_BYTES",
    "basic_auth": "BASIC_AUTH",
    "rate_limit_per_minute": "RATE_LIMIT_PER_MINUTE",
    "forwarded_allow_ips": "FORWARDED_ALLOW_IPS",
    "queue_concurrency": "GRADIO_CONCURRENCY",
    "queue_max_size": "GRADIO_MAX_QUEUE",
    "log_level": "LOG_LEVEL",
}
# Read too, not a field: PORT (wins over GRADIO_SERVER_PORT).
EXTRA_ENV_VARS = ("PORT",)

# The build this code is (GET /health "build"): the image sets BUILD_ID from its BUILD_ID build arg (the git
# sha). A fact of the build, not a setting: not in Settings nor in .env.example, whose copy passed with
# `docker run --env-file` would override the image's value.
BUILD_ID_VAR = "BUILD_ID"
BUILD_ID_DEFAULT = "dev"


def build_id() -> str:
    return os.environ.get(BUILD_ID_VAR, "").strip() or BUILD_ID_DEFAULT


def load() -> Settings:
    """Read the settings from the environment; raise SettingsError naming a bad variable."""
    d = Settings()
    port_var = "PORT" if os.environ.get("PORT", "").strip() else ENV_VARS["port"]
    basic_auth = _str(ENV_VARS["basic_auth"], "")
    if basic_auth and ":" not in basic_auth:
        raise SettingsError("BASIC_AUTH must be user:password")
    device = _str(ENV_VARS["device"], d.device).lower()
    if device not in {"auto", "cpu", "cuda", "mps"}:
        raise SettingsError(f"DEVICE={device!r} is not one of auto, cpu, cuda, mps")
    quantize = _str(ENV_VARS["quantize"], d.quantize).lower()
    if quantize not in {"int8", "none"}:
        raise SettingsError(f"QUANTIZE={quantize!r} is not one of int8, none")
    cache = Path(_str(ENV_VARS["model_cache_dir"], str(d.model_cache_dir))).expanduser()
    checkpoints = Path(_str(ENV_VARS["checkpoint_dir"], str(d.checkpoint_dir))).expanduser()
    return Settings(
        host=_str(ENV_VARS["host"], d.host),
        port=_int(port_var, d.port, 1, 65535),
        default_model=_str(ENV_VARS["default_model"], d.default_model),
        preload=_bool(ENV_VARS["preload"], d.preload),
        model_cache_dir=cache,
        # Folders a model may be loaded from by path: built models and training runs' checkpoints.
        model_dirs=_paths(ENV_VARS["model_dirs"], os.pathsep.join([str(cache), str(checkpoints / "runs")])),
        allow_downloads=_bool(ENV_VARS["allow_downloads"], d.allow_downloads),
        judge_model=_str(ENV_VARS["judge_model"], d.judge_model),
        device=device,
        torch_threads=_int(ENV_VARS["torch_threads"], d.torch_threads, 0, 256),
        quantize=quantize,
        checkpoint_dir=checkpoints,
        log_dir=Path(_str(ENV_VARS["log_dir"], str(d.log_dir))).expanduser(),
        seed=_int(ENV_VARS["seed"], d.seed, 0, 2**31 - 1),
        max_text_chars=_int(ENV_VARS["max_text_chars"], d.max_text_chars, 1, 1_000_000),
        max_new_tokens_limit=_int(ENV_VARS["max_new_tokens_limit"], d.max_new_tokens_limit, 1, 4096),
        max_body_bytes=_int(ENV_VARS["max_body_bytes"], d.max_body_bytes, 1024, 64 * 2**20),
        basic_auth=basic_auth,
        rate_limit_per_minute=_int(ENV_VARS["rate_limit_per_minute"], d.rate_limit_per_minute, 0, 10**6),
        forwarded_allow_ips=_str(ENV_VARS["forwarded_allow_ips"], d.forwarded_allow_ips),
        queue_concurrency=_int(ENV_VARS["queue_concurrency"], d.queue_concurrency, 1, 64),
        queue_max_size=_int(ENV_VARS["queue_max_size"], d.queue_max_size, 1, 10_000),
        log_level=_str(ENV_VARS["log_level"], d.log_level).upper(),
    )


assert set(ENV_VARS) == {f.name for f in fields(Settings)}, "ENV_VARS out of step"
