"""Where the app under test runs: `container` | `process` | `url`.

    target = ContainerTarget(tag, ...) | ProcessTarget(...) | UrlTarget(url, ...)   # plugin.py's `target` fixture
    target.kind, target.base_url, target.logs(), target.log_tail(60), target.stop()
    target.started_at                      # time.monotonic() when the start was issued (None: url)
    target.health_seconds                  # start -> first /health 200 (None: url)
    target.resource_sample(cpu=False)      # {"memory_bytes", "cpu_percent"?, "source"} from outside
    target.describe()                      # a dict for the report

container (ContainerTarget): testcontainers DockerImage build (streamed log, BuildFailed with the
    log on error) or a prebuilt --image; DockerContainer run with the plan's volumes (tmp dirs on
    /app/demo/checkpoints and /app/demo/logs) and an 8 GB memory limit, HttpWaitStrategy on
    /health (stops early when the container exits). Extras: .container (docker-py Container),
    .container_id, .image_attrs (docker image inspect), .container_attrs, .exec(cmd) (in the running
    container), .checkpoint_dir / .log_dir (host paths), .docker (docker-py client), .build_seconds.
process (ProcessTarget): `python -m app` on a free port, tmp checkpoint/log dirs, log captured.
    Extras: .pid, .process (psutil.Process), .checkpoint_dir / .log_dir.
url (UrlTarget): nothing started; memory from the app's /metrics.

Cleanup: every started target registers itself; `cleanup_all()` (called at session end, atexit
and on SIGTERM/SIGINT by the plugin) removes containers and kills process groups, so Ryuk is not
needed (TESTCONTAINERS_RYUK_DISABLED=true works; with Ryuk on it is a second safety net).
Leftovers of a crashed earlier run are found by label and removed by `sweep_stale_containers()`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from validation.gate import CLOCK


def _loopback_host() -> None:
    """Reach a container's published port on loopback. When testcontainers believes it runs inside
    a container (as on our VMs) it would use the Docker bridge's gateway (172.17.0.1) instead; the
    gate sends traffic to this machine's loopback only (a remote DOCKER_HOST keeps its own host)."""
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as tc

    if tc.connection_mode_override or os.environ.get("DOCKER_HOST", "unix://").startswith(("tcp:", "ssh:")):
        return
    tc.connection_mode_override = ConnectionMode.docker_host
    tc.tc_host_override = tc.tc_host_override or "127.0.0.1"

REPO = Path(__file__).resolve().parent.parent
APP_PORT = 7860
CONTAINER_CHECKPOINTS = "/app/demo/checkpoints"
CONTAINER_LOGS = "/app/demo/logs"
LOCAL_BASE_IMAGE = "cai-base:bookworm-slim"  # scripts/make-base-image.sh's tag
LABEL = "cai-gate"  # label key on every container we start: value = owner pid

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


def docker_client(timeout: int = 120):
    import docker

    return docker.from_env(timeout=timeout)


def docker_answers(timeout: float = 3.0) -> tuple[bool, str]:
    """(True, engine description) when a Docker engine answers; (False, why) otherwise."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        with CLOCK.spent("engine"):
            client.ping()
            v = client.version()
        return True, f"Docker engine {v.get('Version', '?')} at {client.api.base_url}"
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        return False, f"{type(exc).__name__}: {exc}"


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
        self.saved_log: Path | None = None
        self._stopped = False

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

    def save_log(self, path: Path) -> Path | None:
        text = self.logs()
        if not text:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.saved_log = path
        return path

    def stop(self) -> None:
        self._stopped = True
        self._unregister()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "base_url": self.base_url, "health_seconds": self.health_seconds}


# ---------------------------------------------------------------------------------------------
# url


class UrlTarget(Target):
    kind = "url"

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None, health_timeout: float = 120, say: Say = _noop) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        # A deployment may be waking up (Fly auto start, Cloud Run scale from zero): wait for /health
        # (any answer but a connection error or 5xx from a proxy), without counting it as start-up.
        say(f"url target: {self.base_url} (nothing started); waiting for GET /health to answer")
        try:
            waited = wait_http(f"{self.base_url}/health", health_timeout, predicate=lambda r: r.status_code < 502)
        except TargetError as exc:
            raise TargetError(f"url target does not answer: {exc}") from None
        say(f"url target answers after {waited:.1f} s")

    def resource_sample(self, cpu: bool = False) -> dict[str, Any] | None:
        """Memory of the app as it reports it in /metrics (process_resident_memory_bytes)."""
        from prometheus_client.parser import text_string_to_metric_families

        with CLOCK.spent("app"):
            r = httpx.get(f"{self.base_url}/metrics", auth=self.auth, timeout=10)
        r.raise_for_status()
        for fam in text_string_to_metric_families(r.text):
            if fam.name == "process_resident_memory_bytes":
                return {"memory_bytes": int(fam.samples[0].value), "source": "/metrics process_resident_memory_bytes"}
        return None


# ---------------------------------------------------------------------------------------------
# process


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
    t0 = time.monotonic()
    last = "no answer"
    with httpx.Client(timeout=5, auth=auth) as client:
        while True:
            dead = alive()
            if dead:
                raise TargetError(dead)
            try:
                with CLOCK.spent("app"):
                    r = client.get(url)
                if predicate(r):
                    return time.monotonic() - t0
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - t0 > timeout:
                raise TargetError(f"{url} not ready after {timeout:.0f} s (last: {last})")
            CLOCK.sleep(interval)


class ProcessTarget(Target):
    kind = "process"

    def __init__(
        self,
        *,
        python: str = sys.executable,
        cwd: Path = REPO,
        port: int | None = None,
        env: dict[str, str] | None = None,
        health_timeout: float = 120,
        log_path: Path | None = None,
        say: Say = _noop,
    ) -> None:
        super().__init__()
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._data_root, self.checkpoint_dir, self.log_dir = _make_data_dirs("cai-gate-proc-")
        self.log_path = log_path or (self._data_root / "app.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {
            **os.environ,
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "CHECKPOINT_DIR": str(self.checkpoint_dir),
            "LOG_DIR": str(self.log_dir),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        full_env.pop("PORT", None)
        # GATE_APP_MODULE: the faults session's wrapper (validation/faults/inject.py) instead of the app
        self.cmd = [python, "-m", os.environ.get("GATE_APP_MODULE") or "app"]
        say(f"process target: {' '.join(self.cmd)} on {self.base_url} (log: {self.log_path})")
        self._log_fh = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            self.cmd,
            cwd=cwd,
            env=full_env,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._register()
        self.pid = self.popen.pid
        try:
            self.health_seconds = wait_http(f"{self.base_url}/health", health_timeout, alive=self.dead)
        except TargetError as exc:
            raise TargetError(f"process target did not become healthy: {exc}", self.log_tail()) from None
        say(f"process target healthy after {self.health_seconds:.1f} s (pid {self.pid})")

    def dead(self) -> str | None:
        code = self.popen.poll()
        return None if code is None else f"`python -m app` exited with code {code}"

    @property
    def process(self):
        import psutil

        return psutil.Process(self.pid)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def resource_sample(self, cpu: bool = False) -> dict[str, Any] | None:
        import psutil

        try:
            procs = [self.process, *self.process.children(recursive=True)]
            sample: dict[str, Any] = {
                "memory_bytes": sum(p.memory_info().rss for p in procs),
                "source": "psutil RSS (process + children)",
            }
            if cpu:
                for p in procs:
                    p.cpu_percent(None)
                time.sleep(0.5)
                sample["cpu_percent"] = sum(p.cpu_percent(None) for p in procs)
            return sample
        except psutil.Error:
            return None

    def stop(self, timeout: float = 10) -> None:
        if self._stopped:
            return
        super().stop()
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log_fh.close()
        shutil.rmtree(self._data_root, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pid": self.pid, "cmd": " ".join(self.cmd)}


# ---------------------------------------------------------------------------------------------
# container


def _image_class():
    from testcontainers.core.image import DockerImage

    class StreamingDockerImage(DockerImage):
        """testcontainers' DockerImage, building through the low-level API so the log streams
        (progress lines to `say`, everything to a file) and a failure carries the whole log."""

        def __init__(self, *args: Any, say: Say = _noop, log_path: Path | None = None, **kw: Any):
            super().__init__(*args, **kw)
            self._say = say
            self._log_path = log_path
            self.log_lines: list[str] = []

        def build(self):
            api = self.get_docker_client().client.api
            stream = api.build(
                path=str(self.path),
                tag=self.tag,
                dockerfile=self._dockerfile_path,
                nocache=self._no_cache,
                rm=True,
                forcerm=True,  # also remove the container of a failed step
                decode=True,
                **self._kwargs,
            )
            fh = open(self._log_path, "w") if self._log_path else None  # noqa: SIM115
            image_id, error = None, None
            try:
                for chunk in stream:
                    text = chunk.get("stream") or chunk.get("status") or ""
                    if "error" in chunk:
                        error = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                        text = f"ERROR: {error}\n"
                    if "aux" in chunk and "ID" in chunk["aux"]:
                        image_id = chunk["aux"]["ID"]
                    if not text:
                        continue
                    self.log_lines.append(text.rstrip("\n"))
                    if fh:
                        fh.write(text if text.endswith("\n") else text + "\n")
                        fh.flush()
                    if text.startswith("Step ") or text.startswith("ERROR"):
                        self._say("  " + text.strip()[:160])
                    m = re.match(r"Successfully built ([0-9a-f]+)", text)
                    if m:
                        image_id = m.group(1)
            finally:
                if fh:
                    fh.close()
            if error or not image_id:
                raise BuildFailed(
                    f"docker build failed: {error or 'no image id in the build output'}",
                    "\n".join(self.log_lines[-60:]),
                )
            self._image = self.get_docker_client().client.images.get(image_id)
            return self

    return StreamingDockerImage


def default_build_args(repo: Path = REPO) -> dict[str, str]:
    """Build args from the Dockerfile's documented ARGs: the offline wheelhouse when it has wheels, the
    locally made base image (scripts/make-base-image.sh) when it is there."""
    args: dict[str, str] = {}
    dockerfile = (repo / "Dockerfile").read_text() if (repo / "Dockerfile").exists() else ""
    if re.search(r"^ARG DEPS_SOURCE\b", dockerfile, re.M) and any((repo / "wheelhouse").glob("*.whl")):
        args["DEPS_SOURCE"] = "wheelhouse"
    if re.search(r"^ARG BASE_IMAGE\b", dockerfile, re.M) and image_present(LOCAL_BASE_IMAGE):
        args["BASE_IMAGE"] = LOCAL_BASE_IMAGE
    return args


def image_present(tag: str) -> bool:
    try:
        docker_client(30).images.get(tag)
        return True
    except Exception:  # noqa: BLE001 (no engine, or no such image)
        return False


def build_image(
    tag: str,
    *,
    repo: Path = REPO,
    build_args: dict[str, str] | None = None,
    log_path: Path | None = None,
    say: Say = _noop,
    no_cache: bool = False,
) -> float:
    """Build `tag` from the repo's Dockerfile with testcontainers' DockerImage; return seconds."""
    args = {**default_build_args(repo), **(build_args or {})}
    say(
        f"building image {tag} from {repo / 'Dockerfile'}"
        + (f" ({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")
        + (f"; log: {log_path}" if log_path else "")
    )
    image = _image_class()(path=str(repo), tag=tag, clean_up=False, no_cache=no_cache, buildargs=args, say=say, log_path=log_path)
    t0 = time.perf_counter()
    with CLOCK.spent("build"):
        image.build()
    seconds = time.perf_counter() - t0
    say(f"image {tag} built in {seconds:.1f} s ({image.short_id})")
    return seconds


def sweep_stale_containers(say: Say = _noop) -> int:
    """Remove containers a dead earlier gate run left behind (label owner pid no longer alive)."""
    import psutil

    removed = 0
    with contextlib.suppress(Exception):
        client = docker_client(30)
        for c in client.containers.list(all=True, filters={"label": LABEL}):
            owner = c.labels.get(LABEL, "")
            if owner.isdigit() and psutil.pid_exists(int(owner)):
                continue
            with CLOCK.spent("engine"):
                c.remove(force=True, v=True)
            removed += 1
        if removed:
            say(f"removed {removed} container(s) left by an earlier, interrupted gate run")
    return removed


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
                with CLOCK.spent("app"):
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
        health_timeout: float = 120,
        name: str | None = None,
        data_dirs: tuple[Path, Path] | None = None,
        say: Say = _noop,
    ) -> None:
        from testcontainers.core.container import DockerContainer

        _loopback_host()

        super().__init__()
        self.image = image
        self.docker = docker_client()
        with CLOCK.spent("engine"):
            self.image_attrs: dict[str, Any] = self.docker.images.get(image).attrs
        if data_dirs:
            self._data_root = None
            self.checkpoint_dir, self.log_dir = data_dirs
        else:
            self._data_root, self.checkpoint_dir, self.log_dir = _make_data_dirs("cai-gate-ctr-")
        self.name = name or f"cai-gate-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        self.mem_limit = mem_limit
        wait = _AliveHttpWait.make(APP_PORT, "/health", health_timeout)
        self.tc = (
            DockerContainer(image, env=env or {})
            .with_name(self.name)
            .with_exposed_ports(APP_PORT)
            .with_volume_mapping(str(self.checkpoint_dir), CONTAINER_CHECKPOINTS, "rw")
            .with_volume_mapping(str(self.log_dir), CONTAINER_LOGS, "rw")
            .with_kwargs(mem_limit=mem_limit, labels={LABEL: str(os.getpid())})
            .waiting_for(wait)
        )
        say(
            f"container target: docker run {image} (name {self.name}, mem {mem_limit}, volumes "
            f"{self.checkpoint_dir}:{CONTAINER_CHECKPOINTS}, {self.log_dir}:{CONTAINER_LOGS})"
        )
        self._register()
        self.started_at = time.monotonic()
        try:
            with CLOCK.spent("engine"):
                self.tc.start()
        except Exception as exc:  # noqa: BLE001 - any start failure: report with the log
            log = self.log_tail()
            if isinstance(exc, TimeoutError):
                raise TargetError(f"container did not answer GET /health 200 within {health_timeout:.0f} s", log) from None
            if isinstance(exc, TargetError):
                raise TargetError(f"container did not become healthy: {exc}", log) from None
            raise TargetError(f"container could not be started: {type(exc).__name__}: {exc}", log) from None
        self.health_seconds = time.monotonic() - self.started_at
        host = self.tc.get_container_host_ip()
        self.host_port = int(self.tc.get_exposed_port(APP_PORT))
        self.base_url = f"http://{'127.0.0.1' if host in ('localhost', '') else host}:{self.host_port}"
        say(f"container healthy after {self.health_seconds:.1f} s at {self.base_url} ({self.container_id[:12]})")

    @property
    def container(self):
        return self.tc.get_wrapped_container()

    @property
    def container_id(self) -> str:
        return self.tc.get_container_id()

    @property
    def container_attrs(self) -> dict[str, Any]:
        c = self.container
        with CLOCK.spent("engine"):
            c.reload()
        return c.attrs

    def logs(self) -> str:
        try:
            with CLOCK.spent("engine"):
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

    def exec(self, cmd: list[str] | str, user: str = "") -> tuple[int, str]:
        """Run a command in the running container; (exit code, stdout+stderr)."""
        with CLOCK.spent("engine"):
            code, out = self.container.exec_run(cmd, user=user)
        return code, out.decode(errors="replace")

    def resource_sample(self, cpu: bool = False) -> dict[str, Any] | None:
        """docker stats: memory in use (usage minus page cache, as `docker stats` shows) and CPU %."""
        with CLOCK.spent("engine"):
            s = self.container.stats(stream=False, one_shot=not cpu)
        mem = s.get("memory_stats", {})
        stats = mem.get("stats", {})
        cache = stats.get("inactive_file", stats.get("total_inactive_file", stats.get("cache", 0)))
        sample: dict[str, Any] = {
            "memory_bytes": max(0, mem.get("usage", 0) - cache),
            "memory_limit_bytes": mem.get("limit"),
            "source": "docker stats",
        }
        if cpu:
            cs, ps = s.get("cpu_stats", {}), s.get("precpu_stats", {})
            d_cpu = cs.get("cpu_usage", {}).get("total_usage", 0) - ps.get("cpu_usage", {}).get("total_usage", 0)
            d_sys = cs.get("system_cpu_usage", 0) - ps.get("system_cpu_usage", 0)
            ncpu = cs.get("online_cpus") or len(cs.get("cpu_usage", {}).get("percpu_usage") or [1])
            sample["cpu_percent"] = (d_cpu / d_sys) * ncpu * 100 if d_sys > 0 else 0.0
        return sample

    def stop(self) -> None:
        if self._stopped:
            return
        super().stop()
        with contextlib.suppress(Exception), CLOCK.spent("engine"):
            self.tc.stop(force=True, delete_volume=True)
        if self._data_root:
            shutil.rmtree(self._data_root, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "image": self.image, "mem_limit": self.mem_limit, "name": self.name}
        with contextlib.suppress(Exception):
            d["container_id"] = self.container_id
            d["image_id"] = self.image_attrs.get("Id")
        return d


def run_in_image(client, image: str, cmd: str, user: str = "") -> tuple[int, str]:  # noqa: ANN001
    """`docker run --rm --network none --entrypoint sh IMAGE -c CMD`: the image as built (no
    volumes, no runtime state), as its own user unless `user` is given; (exit code, output)."""
    import docker

    with CLOCK.spent("engine"):
        try:
            out = client.containers.run(
                image,
                ["-c", cmd],
                entrypoint="sh",
                remove=True,
                network_mode="none",
                user=user or None,
                stdout=True,
                stderr=True,
                labels={LABEL: str(os.getpid())},
            )
            return 0, out.decode(errors="replace")
        except docker.errors.ContainerError as exc:
            return exc.exit_status, (exc.stderr or b"").decode(errors="replace")


def image_size_bytes(attrs: dict[str, Any]) -> int:
    return int(attrs.get("Size") or attrs.get("VirtualSize") or 0)


def ryuk_setting(say: Say = _noop) -> str:
    """Decide Ryuk: honour TESTCONTAINERS_RYUK_DISABLED when set; else disable it when its image
    is not present locally (no registry here) and rely on our own cleanup."""
    if os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "").strip():
        return os.environ["TESTCONTAINERS_RYUK_DISABLED"]
    from testcontainers.core.config import testcontainers_config as tc

    present = False
    with contextlib.suppress(Exception), CLOCK.spent("engine"):
        docker_client(10).images.get(tc.ryuk_image)
        present = True
    if not present:
        tc.ryuk_disabled = True
        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        say(f"Ryuk image {tc.ryuk_image} not present: Ryuk disabled, the gate removes its containers itself")
        return "true"
    return "false"

