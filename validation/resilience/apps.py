"""App instances the resilience gate starts itself: containers (the container target with chosen
volumes, tmpfs, env and a fixed loopback port, so `docker restart` keeps the URL) and `python -m app`
processes.

    c = AppContainer(image, env={...}, data=DataDirs.make("x"), tmpfs={...}, mem_limit="8g")
    c.kill("SIGKILL"); c.wait_exit(); c.restart(); c.wait_healthy(); c.stop()

Every instance registers with validation.targets' cleanup (session end, atexit, SIGTERM) and carries
the gate's container label, so a crashed run's leftovers are swept like the framework's own.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validation import api
from validation import targets as T
from validation.targets.base import _make_data_dirs, _noop


@dataclass
class DataDirs:
    """Host folders bind-mounted as the checkpoint and log volumes (kept across containers)."""

    root: Path
    checkpoints: Path
    logs: Path

    @classmethod
    def make(cls, prefix: str) -> DataDirs:
        return cls(*_make_data_dirs(f"cai-res-{prefix}-"))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class AppContainer(T.ContainerTarget):
    """The container target with what the resilience faults need: a fixed loopback port (kept by
    `docker restart`), chosen volumes or tmpfs, and kill / restart / wait / copy-in."""

    def __init__(
        self,
        image: str,
        *,
        env: dict[str, str] | None = None,
        data: DataDirs | None = None,
        tmpfs: dict[str, str] | None = None,
        mem_limit: str = "8g",
        health_timeout: float = 180,
        say=_noop,
    ) -> None:
        self.data = data
        super().__init__(image, env=env, mem_limit=mem_limit, health_timeout=health_timeout,
                         data_dirs=(data.checkpoints, data.logs) if data else None, volumes=bool(data),
                         host_port=T.free_port(), tmpfs=tmpfs, say=say)

    # -- state
    def attrs(self) -> dict[str, Any]:
        return self.container_attrs

    def status(self) -> str:
        return self.attrs().get("State", {}).get("Status", "?")

    def wait_healthy(self, timeout: float = 180) -> float:
        try:
            return T.wait_http(f"{self.base_url}/health", timeout, alive=self.dead, interval=0.1)
        except T.TargetError as exc:
            raise T.TargetError(f"{self.name}: {exc}", self.log_tail()) from None

    def wait_exit(self, timeout: float) -> float | None:
        """Seconds until the container is no longer running; None if still running at `timeout`."""
        import requests

        t0 = time.monotonic()
        try:
            self.container.wait(timeout=timeout)  # docker wait: the engine answers when it stops
        except requests.exceptions.ConnectionError:  # docker-py's read timeout: still running
            return None
        return time.monotonic() - t0

    def memory_bytes(self) -> int | None:
        try:
            return (self.resource_sample() or {}).get("memory_bytes") or None
        except Exception:  # noqa: BLE001 - container gone
            return None

    # -- faults
    def kill(self, signal: str = "SIGKILL") -> None:
        self.container.kill(signal=signal)

    def put_files(self, dest: str, files: dict[str, str]) -> None:
        """Copy small text files into the container (as root, like `docker cp`)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        self.exec(["mkdir", "-p", dest], user="0")
        self.container.put_archive(dest, buf.getvalue())


def start_process(env: dict[str, str] | None = None, say=_noop, health_timeout: float = 180) -> T.ProcessTarget:
    """`python -m app` with extra env (ProcessTarget: its own tmp checkpoint and log folders)."""
    return T.ProcessTarget(env=env, say=say, health_timeout=health_timeout)


def wait_ready(base_url: str, timeout: float = 180, auth=None) -> float:
    """Seconds until GET /ready answers 200 (the default model loaded); TargetError otherwise."""
    with api.Client(base_url=base_url, auth=auth) as client:
        state = api.wait_ready(client, timeout, interval=0.2)
    if not state["ok"]:
        raise T.TargetError(f"{base_url}/ready: not ready after {state['seconds']:.0f} s (last: {state['last']})")
    return state["seconds"]
