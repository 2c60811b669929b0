"""The Docker engine as the gate uses it: a client, whether one answers (one started if not), containers of ours
(labelled with the owner's pid) swept after a crash, one-off runs of an image, and Ryuk."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys

from validation.gate import CLOCK
from validation.targets.base import LABEL, REPO, Say, _noop


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


@functools.cache
def _timed_client_class():
    import docker  # imported when first needed: the gate may run without Docker (url, process targets)

    class TimedAPIClient(docker.APIClient):
        def request(self, *args, **kwargs):  # requests.Session.request: every call of the Engine API
            with CLOCK.spent("engine"):
                return super().request(*args, **kwargs)

    class TimedDockerClient(docker.DockerClient):
        def __init__(self, *args, **kwargs):  # DockerClient's own __init__ only makes its APIClient
            self.api = TimedAPIClient(*args, **kwargs)

    return TimedDockerClient


def docker_client(timeout: int = 120):
    """A docker-py client (DOCKER_HOST, the CLI's context) whose every Engine API call counts as engine
    time in the session's clock: the gate's one instrumented Docker client."""
    return _timed_client_class().from_env(timeout=timeout)


def run_script(name: str, say: Say = _noop) -> bool:
    """Run one of the repo's idempotent set-up scripts (scripts/NAME: a no-op when its work is done),
    its output line by line through `say`; False when it fails (its output says why)."""
    proc = subprocess.Popen(["bash", str(REPO / "scripts" / name)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHON": sys.executable})
    for line in proc.stdout or ():
        say(line.rstrip())
    return proc.wait() == 0


def ensure_engine(say: Say = _noop) -> tuple[bool, str]:
    """docker_answers(), after starting an engine with scripts/docker-engine.sh when none answers (it
    installs and starts dockerd as root; elsewhere it says what to do)."""
    ok, why = docker_answers()
    if ok:
        return ok, why
    say(f"no Docker engine answers ({why}): scripts/docker-engine.sh")
    with CLOCK.spent("engine"):
        run_script("docker-engine.sh", say)
    return docker_answers()


def docker_answers(timeout: float = 3.0) -> tuple[bool, str]:
    """(True, engine description) when a Docker engine answers; (False, why) otherwise."""
    try:
        client = docker_client(timeout)
        client.ping()
        v = client.version()
        return True, f"Docker engine {v.get('Version', '?')} at {client.api.base_url}"
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        return False, f"{type(exc).__name__}: {exc}"


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
            c.remove(force=True, v=True)
            removed += 1
        if removed:
            say(f"removed {removed} container(s) left by an earlier, interrupted gate run")
    return removed


def run_in_image(client, image: str, cmd: str, user: str = "") -> tuple[int, str]:  # noqa: ANN001
    """`docker run --rm --network none --entrypoint sh IMAGE -c CMD`: the image as built (no
    volumes, no runtime state), as its own user unless `user` is given; (exit code, output)."""
    import docker

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


@contextlib.contextmanager
def running_image(client, image: str, *, root_owned: tuple[str, ...] = (), env: dict[str, str] | None = None):  # noqa: ANN001
    """`docker run -d --network none IMAGE` as the image ships (its entrypoint, its user), with a
    root-owned tmpfs at each of `root_owned` (what Fly.io / Railway mount); yields (exec_sh, logs):
    exec_sh(cmd) -> (exit code, output) in the running container, (None, why) once it is gone. Removed
    with its volumes on exit."""
    import docker

    ctr = client.containers.run(
        image,
        detach=True,
        network_mode="none",
        environment=env or {},
        tmpfs={d: "uid=0,gid=0,mode=0755" for d in root_owned},
        labels={LABEL: str(os.getpid())},
    )

    def exec_sh(cmd: str) -> tuple[int | None, str]:
        try:
            code, out = ctr.exec_run(["sh", "-c", cmd])
        except docker.errors.APIError as exc:  # 409: the container is not running
            return None, f"container gone: {exc.explanation or exc}"
        return code, out.decode(errors="replace")

    def logs() -> str:
        with contextlib.suppress(Exception):
            return ctr.logs().decode(errors="replace")
        return ""

    try:
        yield exec_sh, logs
    finally:
        with contextlib.suppress(Exception):
            ctr.remove(force=True, v=True)


def ryuk_setting(say: Say = _noop) -> str:
    """Decide Ryuk: honour TESTCONTAINERS_RYUK_DISABLED when set; else disable it when its image
    is not present locally (no registry here) and rely on our own cleanup."""
    if os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "").strip():
        return os.environ["TESTCONTAINERS_RYUK_DISABLED"]
    from testcontainers.core.config import testcontainers_config as tc

    present = False
    with contextlib.suppress(Exception):
        docker_client(10).images.get(tc.ryuk_image)
        present = True
    if not present:
        tc.ryuk_disabled = True
        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        say(f"Ryuk image {tc.ryuk_image} not present: Ryuk disabled, the gate removes its containers itself")
        return "true"
    return "false"
