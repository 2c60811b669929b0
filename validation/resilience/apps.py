"""App instances the resilience gate starts itself: containers with chosen volumes, tmpfs, env and
a fixed loopback port (so `docker restart` keeps the URL), and `python -m app` processes.

    c = AppContainer(image, env={...}, data=DataDirs.make("x"), tmpfs={...}, mem_limit="8g")
    c.kill("SIGKILL"); c.wait_exit(); c.restart(); c.wait_healthy(); c.stop()

Every instance registers with validation.targets' cleanup (session end, atexit, SIGTERM) and carries
the gate's container label, so a crashed run's leftovers are swept like the framework's own.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validation import targets as T
from validation.gate import CLOCK


@dataclass
class DataDirs:
    """Host folders bind-mounted as the checkpoint and log volumes (kept across containers)."""

    root: Path
    checkpoints: Path
    logs: Path

    @classmethod
    def make(cls, prefix: str) -> DataDirs:
        root = Path(tempfile.mkdtemp(prefix=f"cai-res-{prefix}-"))
        ckpt, logs = root / "checkpoints", root / "logs"
        for d in (ckpt, logs):
            d.mkdir()
            d.chmod(0o777)  # the image's non-root uid writes here
        return cls(root, ckpt, logs)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class AppContainer(T.Target):
    kind = "container"

    def __init__(
        self,
        image: str,
        *,
        env: dict[str, str] | None = None,
        data: DataDirs | None = None,
        tmpfs: dict[str, str] | None = None,
        mem_limit: str = "8g",
        health_timeout: float = 180,
        say=T._noop,
        wait: bool = True,
    ) -> None:
        super().__init__()
        self.docker = T.docker_client()
        self.image = image
        self.port = T.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data = data
        self.mem_limit = mem_limit
        volumes: dict[str, dict[str, str]] = {}
        if data:
            self.checkpoint_dir, self.log_dir = data.checkpoints, data.logs
            volumes[str(data.checkpoints)] = {"bind": T.CONTAINER_CHECKPOINTS, "mode": "rw"}
            volumes[str(data.logs)] = {"bind": T.CONTAINER_LOGS, "mode": "rw"}
        self.name = f"cai-res-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        with CLOCK.spent("engine"):
            self.container = self.docker.containers.run(
                image,
                detach=True,
                name=self.name,
                environment=env or {},
                ports={f"{T.APP_PORT}/tcp": ("127.0.0.1", self.port)},
                volumes=volumes,
                tmpfs=tmpfs or {},
                mem_limit=mem_limit,
                labels={T.LABEL: str(os.getpid())},
            )
        self._register()
        self.started_at = time.monotonic()
        say(f"resilience container {self.name} ({image}) on {self.base_url}, mem {mem_limit}")
        if wait:
            self.health_seconds = self.wait_healthy(health_timeout)

    # -- state
    def attrs(self) -> dict[str, Any]:
        with CLOCK.spent("engine"):
            self.container.reload()
        return self.container.attrs

    def status(self) -> str:
        return self.attrs().get("State", {}).get("Status", "?")

    def _dead(self) -> str | None:
        st = self.attrs().get("State", {})
        if st.get("Status") in ("exited", "dead"):
            return f"container exited (code {st.get('ExitCode')}, OOMKilled {st.get('OOMKilled')})"
        return None

    def wait_healthy(self, timeout: float = 180) -> float:
        try:
            return T.wait_http(f"{self.base_url}/health", timeout, alive=self._dead, interval=0.1)
        except T.TargetError as exc:
            raise T.TargetError(f"{self.name}: {exc}", self.log_tail()) from None

    def wait_exit(self, timeout: float) -> float | None:
        """Seconds until the container is no longer running; None if still running at `timeout`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.status() in ("exited", "dead"):
                return time.monotonic() - t0
            CLOCK.sleep(0.05)
        return None

    # -- faults
    def kill(self, signal: str = "SIGKILL") -> None:
        with CLOCK.spent("engine"):
            self.container.kill(signal=signal)

    def restart(self, timeout: int = 10) -> None:
        with CLOCK.spent("engine"):
            self.container.restart(timeout=timeout)

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
        with CLOCK.spent("engine"):
            self.container.put_archive(dest, buf.getvalue())

    def exec(self, cmd: list[str] | str, user: str = "") -> tuple[int, str]:
        with CLOCK.spent("engine"):
            code, out = self.container.exec_run(cmd, user=user)
        return code, out.decode(errors="replace")

    def memory_bytes(self) -> int | None:
        try:
            with CLOCK.spent("engine"):
                s = self.container.stats(stream=False)
        except Exception:  # noqa: BLE001 - container gone
            return None
        mem = s.get("memory_stats", {})
        stats = mem.get("stats", {})
        cache = stats.get("inactive_file", stats.get("total_inactive_file", stats.get("cache", 0)))
        return max(0, mem.get("usage", 0) - cache) if mem.get("usage") else None

    def logs(self) -> str:
        try:
            with CLOCK.spent("engine"):
                return self.container.logs(stdout=True, stderr=True).decode(errors="replace")
        except Exception:  # noqa: BLE001
            return ""

    def stop(self) -> None:
        if self._stopped:
            return
        super().stop()
        with contextlib.suppress(Exception), CLOCK.spent("engine"):
            self.container.remove(force=True, v=True)


def start_process(env: dict[str, str] | None = None, say=T._noop, health_timeout: float = 180) -> T.ProcessTarget:
    """`python -m app` with extra env (ProcessTarget: its own tmp checkpoint and log folders)."""
    return T.ProcessTarget(env=env, say=say, health_timeout=health_timeout)


def wait_ready(base_url: str, timeout: float = 180, auth=None) -> float:
    """Seconds until GET /ready answers 200 (the default model loaded)."""
    return T.wait_http(f"{base_url}/ready", timeout, interval=0.2, auth=auth)
