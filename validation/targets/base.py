"""What every target shares: the Target base class, its errors, the registry that `cleanup_all`
empties (session end, atexit, SIGTERM), data folders, and waiting for HTTP."""

from __future__ import annotations

import atexit
import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from validation import api
from validation.targets.resources import DiskUsage

REPO = Path(__file__).resolve().parents[2]
APP_PORT = 7860
CONTAINER_CHECKPOINTS = "/app/demo/checkpoints"
CONTAINER_LOGS = "/app/demo/logs"
LOCAL_BASE_IMAGE = "cai-base:bookworm-slim"  # scripts/make-base-image.sh's tag
LABEL = "cai-gate"  # label key on every container we start: value = owner pid
HEALTH_TIMEOUT_S = 180.0  # how long a started target may take to answer GET /health (--health-timeout)

Say = Callable[[str], None]


class TargetError(RuntimeError):
    """The target could not be built or started; the message carries the log's tail."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class BuildFailed(TargetError):
    pass


def _noop(_: str) -> None:
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str,
    timeout: float,
    alive: Callable[[], str | None] = lambda: None,
    predicate: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
    interval: float = 0.1,
    auth: tuple[str, str] | None = None,
) -> float:
    """Poll `url` until `predicate` (default: 200); return the seconds waited. TargetError on timeout
    or when `alive()` says why the app is gone."""
    with api.Client(timeout=5, auth=auth) as client:
        state = api.poll_http(client, url, lambda r: predicate(r) or None, timeout=timeout, interval=interval, dead=alive)
    if state["gone"]:
        raise TargetError(state["gone"])
    if not state["ok"]:
        raise TargetError(f"{url} not ready after {timeout:.0f} s (last: {state['last']})")
    return state["seconds"]


_REGISTRY: list[Target] = []
_REG_LOCK = threading.Lock()


def cleanup_all() -> None:
    """Stop every target still running (idempotent; safe from atexit and signal handlers)."""
    with _REG_LOCK:
        targets = list(_REGISTRY)
    for t in targets:
        with contextlib.suppress(Exception):
            t.stop()


atexit.register(cleanup_all)


def _make_data_dirs(prefix: str) -> tuple[Path, Path, Path]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    ckpt, logs = root / "checkpoints", root / "logs"
    for d in (ckpt, logs):
        d.mkdir()
        d.chmod(0o777)  # the image's non-root uid must write here
    return root, ckpt, logs


class Target:
    kind = "none"

    def __init__(self) -> None:
        self.base_url: str = ""
        self.started_at: float | None = None
        self.health_seconds: float | None = None
        self.checkpoint_dir: Path | None = None
        self.log_dir: Path | None = None
        self._stopped = False

    def start(self) -> Target:
        """Start (or reach) the app; returns once it answers. The constructor only stores options."""
        return self

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _register(self) -> None:
        with _REG_LOCK:
            _REGISTRY.append(self)

    def _unregister(self) -> None:
        with _REG_LOCK:
            if self in _REGISTRY:
                _REGISTRY.remove(self)

    def logs(self) -> str:
        return ""

    def dead(self) -> str | None:
        """Why the app is gone (exited process or container), or None while it runs."""
        return None

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.logs().splitlines()[-n:])

    def resource_sample(self, cpu: bool = False) -> dict[str, Any] | None:
        return None

    def run_python(self, script: Path, args: list[str], timeout: float = 300) -> tuple[int, str] | None:
        """Run `script` with the app's own Python where the app runs: (exit code, output), or None
        where the gate cannot run code (a live URL)."""
        return None

    def disk_usage(self) -> DiskUsage:
        """What the deployment occupies on disk (see each target's); here: not measured."""
        return DiskUsage(source="", skipped=f"{self.kind} target: disk usage is not measured")

    def save_log(self, path: Path) -> Path | None:
        text = self.logs()
        if not text:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def stop(self) -> None:
        self._stopped = True
        self._unregister()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_url": self.base_url, "health_seconds": self.health_seconds}
