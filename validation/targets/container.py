"""The image run by testcontainers with the plan's volumes and memory limit, waited on /health."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

from validation.gate import CLOCK
from validation.targets.base import (
    APP_PORT,
    CONTAINER_CHECKPOINTS,
    CONTAINER_LOGS,
    HEALTH_TIMEOUT_S,
    LABEL,
    Say,
    Target,
    TargetError,
    _make_data_dirs,
    _noop,
    wait_http,
)
from validation.targets.engine import _loopback_host, docker_client
from validation.targets.resources import (
    DiskUsage,
    dir_bytes,
    docker_cpu_share,
    docker_memory_bytes,
    docker_online_cpus,
    docker_size_rw,
)


class _AliveHttpWait:
    """HttpWaitStrategy on /health that gives up at once when the container exits."""

    @staticmethod
    def make(port: int, path: str, timeout: float, interval: float = 0.1):
        from testcontainers.core.wait_strategies import HttpWaitStrategy

        class AliveHttpWaitStrategy(HttpWaitStrategy):
            def wait_until_ready(self, container):
                self._target = container
                return super().wait_until_ready(container)

            def _try_http_request(self, url, headers, ssl_context):
                wrapped = self._target.get_wrapped_container()
                wrapped.reload()
                if wrapped.status in ("exited", "dead"):
                    code = wrapped.attrs.get("State", {}).get("ExitCode")
                    raise TargetError(f"container exited (code {code}) before {path} answered")
                return super()._try_http_request(url, headers, ssl_context)

        return AliveHttpWaitStrategy(port, path).with_startup_timeout(timeout).with_poll_interval(interval)


class ContainerTarget(Target):
    kind = "container"

    def __init__(
        self,
        image: str,
        *,
        env: dict[str, str] | None = None,
        mem_limit: str = "8g",
        health_timeout: float = HEALTH_TIMEOUT_S,
        name: str | None = None,
        data_dirs: tuple[Path, Path] | None = None,
        volumes: bool = True,
        host_port: int | None = None,
        tmpfs: dict[str, str] | None = None,
        say: Say = _noop,
    ) -> None:
        """data_dirs: host folders for the checkpoint and log volumes (default: new tmp ones; volumes=False:
        none). host_port: a fixed loopback port (kept across `docker restart`; default: any free one).
        tmpfs: {container path: mount options}. Nothing starts until start() (or `with`)."""
        super().__init__()
        self.image, self.env, self.mem_limit, self.health_timeout = image, env or {}, mem_limit, health_timeout
        self.name = name or f"cai-gate-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        self._data_dirs, self._volumes, self._host_port, self._tmpfs, self._say = data_dirs, volumes, host_port, tmpfs, say
        self._container = self.tc = None
        self._data_root = None
        self.image_attrs: dict[str, Any] = {}

    def start(self) -> ContainerTarget:
        """docker run the image with its volumes and limit; returns once GET /health answers 200."""
        _loopback_host()
        self.docker = docker_client()
        self.image_attrs = self.docker.images.get(self.image).attrs
        if self._data_dirs:
            self.checkpoint_dir, self.log_dir = self._data_dirs
        elif self._volumes:
            self._data_root, self.checkpoint_dir, self.log_dir = _make_data_dirs("cai-gate-ctr-")
        self.tc = self._container_spec()
        mounts = ([f"{self.checkpoint_dir}:{CONTAINER_CHECKPOINTS}", f"{self.log_dir}:{CONTAINER_LOGS}"]
                  if self.checkpoint_dir else [])
        mounts += [f"tmpfs {path}" for path in self._tmpfs or {}]
        self._say(f"container target: docker run {self.image} (name {self.name}, mem {self.mem_limit}, "
                  f"volumes {', '.join(mounts) or 'none'})")
        self._register()
        self.started_at = time.monotonic()
        try:
            with CLOCK.spent("engine"):  # testcontainers' own client, and its wait on /health
                self.tc.start()
        except Exception as exc:  # noqa: BLE001 - any start failure: report with the log
            log = self.log_tail()
            if isinstance(exc, TimeoutError):
                raise TargetError(f"container did not answer GET /health 200 within {self.health_timeout:.0f} s",
                                  log) from None
            if isinstance(exc, TargetError):
                raise TargetError(f"container did not become healthy: {exc}", log) from None
            raise TargetError(f"container could not be started: {type(exc).__name__}: {exc}", log) from None
        self.health_seconds = time.monotonic() - self.started_at
        host = self.tc.get_container_host_ip()
        self.host_port = int(self.tc.get_exposed_port(APP_PORT))
        self.base_url = f"http://{'127.0.0.1' if host in ('localhost', '') else host}:{self.host_port}"
        self._say(f"container healthy after {self.health_seconds:.1f} s at {self.base_url} ({self.container_id[:12]})")
        return self

    def _container_spec(self):
        """testcontainers' DockerContainer for this target: name, port, limit, label, volumes, tmpfs, wait."""
        from testcontainers.core.container import DockerContainer

        tc = (
            DockerContainer(self.image, env=self.env)
            .with_name(self.name)
            .with_exposed_ports(APP_PORT)
            .with_kwargs(mem_limit=self.mem_limit, labels={LABEL: str(os.getpid())})
            .waiting_for(_AliveHttpWait.make(APP_PORT, "/health", self.health_timeout))
        )
        if self._host_port:  # on loopback only (docker-py takes (address, port); with_bind_ports binds 0.0.0.0)
            tc.ports[str(APP_PORT)] = ("127.0.0.1", self._host_port)
        if self.checkpoint_dir and self.log_dir:
            tc.with_volume_mapping(str(self.checkpoint_dir), CONTAINER_CHECKPOINTS, "rw")
            tc.with_volume_mapping(str(self.log_dir), CONTAINER_LOGS, "rw")
        for path, options in (self._tmpfs or {}).items():
            tc.with_tmpfs_mount(path, options)
        return tc

    @property
    def container(self):
        """The container (docker-py), through the gate's timed Docker client."""
        if self._container is None:
            self._container = self.docker.containers.get(self.tc.get_container_id())
        return self._container

    @property
    def container_id(self) -> str:
        return self.tc.get_container_id()

    @property
    def container_attrs(self) -> dict[str, Any]:
        self.container.reload()
        return self.container.attrs

    def logs(self) -> str:
        try:
            return self.container.logs(stdout=True, stderr=True).decode(errors="replace")
        except Exception:  # noqa: BLE001 - container gone or never created
            return ""

    def dead(self) -> str | None:
        try:
            attrs = self.container_attrs
        except Exception as exc:  # noqa: BLE001
            return f"container gone: {exc}"
        st = attrs.get("State", {})
        if st.get("Status") in ("exited", "dead"):
            return f"container exited with code {st.get('ExitCode')}" + (" (OOM-killed)" if st.get("OOMKilled") else "")
        return None

    def state(self) -> dict[str, Any]:
        """docker inspect's State: Status, ExitCode, OOMKilled, ..."""
        return self.container_attrs.get("State", {})

    def kill(self, signal: str = "SIGKILL") -> None:
        self.container.kill(signal=signal)

    def wait_exit(self, timeout: float) -> float | None:
        """Seconds until the container is no longer running; None if still running at `timeout`."""
        import requests

        t0 = time.monotonic()
        try:
            self.container.wait(timeout=timeout)  # docker wait: the engine answers when it stops
        except requests.exceptions.ConnectionError:  # docker-py's read timeout: still running
            return None
        return time.monotonic() - t0

    def wait_healthy(self, timeout: float = 180) -> float:
        """Seconds until GET /health answers 200 again (after a restart); TargetError with the log's tail."""
        try:
            return wait_http(f"{self.base_url}/health", timeout, alive=self.dead)
        except TargetError as exc:
            raise TargetError(f"{self.name}: {exc}", self.log_tail()) from None

    def put_files(self, dest: str, files: dict[str, str]) -> None:
        """Copy small text files {name: text} into `dest` in the container (as root, like `docker cp`)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        self.exec(["mkdir", "-p", dest], user="0")
        self.container.put_archive(dest, buf.getvalue())

    def exec(self, cmd: list[str] | str, user: str = "") -> tuple[int, str]:
        """Run a command in the running container; (exit code, stdout+stderr)."""
        code, out = self.container.exec_run(cmd, user=user)
        return code, out.decode(errors="replace")

    def run_python(self, script: Path, args: list[str], timeout: float = 300) -> tuple[int, str]:
        self.put_files("/tmp/gate", {script.name: script.read_text(encoding="utf-8")})
        return self.exec(["timeout", str(int(timeout)), "python", f"/tmp/gate/{script.name}", *args], user="app")

    def restart(self, timeout: int = 10) -> None:
        """`docker restart` (SIGTERM, SIGKILL after `timeout`). Docker gives a randomly published port a
        new number on restart: base_url follows it. Returns once the container runs; not waited on."""
        self.container.restart(timeout=timeout)
        ports = (self.container_attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{APP_PORT}/tcp") or []
        if ports:
            self.host_port = int(ports[0]["HostPort"])
            self.base_url = f"{self.base_url.rsplit(':', 1)[0]}:{self.host_port}"

    def resource_sample(self, cpu: bool = False) -> dict[str, Any] | None:
        """docker stats: memory in use (usage minus page cache, as `docker stats` shows) and CPU %."""
        s = self.container.stats(stream=False, one_shot=not cpu)
        sample: dict[str, Any] = {
            "memory_bytes": docker_memory_bytes(s) or 0,
            "memory_limit_bytes": (s.get("memory_stats") or {}).get("limit"),
            "source": "docker stats",
        }
        if cpu:  # as `docker stats` shows it: 100 % per core
            sample["cpu_percent"] = (docker_cpu_share(s) or 0.0) * docker_online_cpus(s)
        return sample

    def disk_usage(self) -> DiskUsage:
        """The image (all its layers, `docker image inspect` Size) + the container's writable layer
        (`docker ps --size`: SizeRw) + the checkpoint and log volumes (their host folders, `du`). Without
        volumes the app writes into the writable layer, which then counts its data."""
        source = f"docker image inspect {self.image} (Size), docker ps --size (SizeRw) of {self.container_id[:12]}"
        rw = docker_size_rw(self.docker.api.containers(all=True, size=True, filters={"id": self.container_id}))
        if rw is None:
            return DiskUsage(source, error=f"docker ps --size gave no size for container {self.container_id[:12]}")
        parts = {f"image {self.image}": int(self.image_attrs.get("Size") or 0), "writable layer": rw}
        if not self.checkpoint_dir:
            return DiskUsage(source + "; no volumes: checkpoints and logs are in the writable layer", parts)
        parts[f"{CONTAINER_CHECKPOINTS} volume"] = dir_bytes(self.checkpoint_dir)
        parts[f"{CONTAINER_LOGS} volume"] = dir_bytes(self.log_dir)
        return DiskUsage(source + f", du of the volumes' host folders {self.checkpoint_dir} and {self.log_dir}", parts)

    def stop(self) -> None:
        if self._stopped:
            return
        super().stop()
        if self.tc is not None:
            with contextlib.suppress(Exception):  # tc.stop(), with its `docker rm -f -v` through the timed client
                self.container.remove(force=True, v=True)
            with contextlib.suppress(Exception):
                self.tc.get_docker_client().client.close()
        if self._data_root:
            shutil.rmtree(self._data_root, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "image": self.image, "mem_limit": self.mem_limit, "name": self.name}
        with contextlib.suppress(Exception):
            d["container_id"] = self.container_id
            d["image_id"] = self.image_attrs.get("Id")
        return d
