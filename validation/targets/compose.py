"""The compose `scale` profile as the replicas session's fleet on the container target: Postgres, two
replicas of the gated image and the balancer, each a container, started from docker-compose.yml as a
user starts them (`docker compose --profile scale up`), then removed with their volumes.

    with scale_fleet("cai-demo:latest", say=print) as (edge, replicas, database): edge.url, replicas[0].base_url
    python -m validation.targets.compose [--image TAG] -- CMD ...   # {url}, {http_url}, {build} filled in

The Postgres and balancer images are built from compose/ on the base image (Debian's packages, no
registry); the replicas run the image given. Each replica's port is published on loopback, so the
gate reaches it directly as well as through the balancer. The command form runs CMD against the
balancer (plain http) and removes everything after, e.g. the browser gate through the fleet:
`-- nox -s e2e -- --target url --base-url {url} --expect-build {build}`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from validation.targets.base import REPO, Say, TargetError, _noop, free_port
from validation.targets.image import REVISION_LABEL, UNKNOWN_BUILD
from validation.targets.proxy import Edge, command, run_against

COMPOSE_FILE = REPO / "docker-compose.yml"
REPLICAS = ("replica1", "replica2")  # the profile's replicas
UP_TIMEOUT_S = 300  # build of the two small images on a cold cache, then every container healthy


class Project:
    """`docker compose` on one project of docker-compose.yml's scale profile."""

    def __init__(self, name: str, env: dict[str, str]):
        self.name, self.env = name, {**os.environ, **env}

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        cmd = ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.name, "--profile", "scale", *args]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise TargetError(f"{' '.join(cmd[2:])} failed (exit {done.returncode}): {done.stderr[-1500:]}")
        return done.stdout

    def state(self, service: str) -> str:
        """The service's container state (running, exited, ...), health included when it has one."""
        cid = self.run("ps", "-a", "-q", service).strip()
        if not cid:
            return "missing"
        out = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                              cid], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or "missing"


class Replica:
    """One replica container: its own URL, and what the gate does to it."""

    def __init__(self, project: Project, service: str):
        self.project, self.service = project, service
        port = project.run("port", service, "7860").strip().rsplit(":", 1)[-1]
        self.base_url = f"http://127.0.0.1:{port}"

    def kill(self) -> None:
        """SIGKILL of the container (Docker does not restart a container it was told to kill)."""
        self.project.run("kill", "-s", "SIGKILL", self.service)

    def dead(self) -> str | None:
        state = self.project.state(self.service)
        return None if state.startswith("running") else f"container {self.service} is {state}"

    def save_log(self, path: Path) -> Path | None:
        path.write_text(self.project.run("logs", "--no-color", self.service, check=False))
        return path


class Database:
    """The profile's Postgres container: stopped (a fast shutdown) and started again for an outage."""

    def __init__(self, project: Project):
        self.project = project
        self.url = f"postgresql://cai:***@postgres:5432/cai (compose project {project.name})"

    def stop(self) -> None:
        self.project.run("stop", "postgres")

    def start(self, timeout: float = 60) -> None:
        self.project.run("start", "postgres")
        t0 = time.monotonic()
        while self.project.state("postgres") != "running healthy":
            if time.monotonic() - t0 > timeout:
                raise TargetError(f"postgres not healthy {timeout:.0f} s after its start: {self.project.state('postgres')}")
            time.sleep(0.2)


@contextlib.contextmanager
def scale_fleet(image: str, say: Say = _noop) -> Iterator[tuple[Edge, list[Replica], Database]]:
    """The profile up with `image` as its replicas; yields (balancer, replicas, database) once every
    container is healthy. Everything is removed at the end, volumes too."""
    port, password = free_port(), secrets.token_hex(12)
    project = Project(f"cai-gate-scale-{os.getpid()}", {"CAI_IMAGE": image, "SCALE_PORT": str(port),
                                                        "POSTGRES_PASSWORD": password})
    say(f"compose scale profile (project {project.name}): building postgres and balancer on the base image")
    try:
        project.run("build", "postgres", "balancer", timeout=UP_TIMEOUT_S)
        t0 = time.monotonic()
        project.run("up", "-d", "--no-build", "--wait", *REPLICAS, "balancer", timeout=UP_TIMEOUT_S)
        replicas = [Replica(project, s) for s in REPLICAS]
        say(f"compose scale profile up after {time.monotonic() - t0:.1f} s: balancer http://127.0.0.1:{port}, "
            + ", ".join(f"{r.service} {r.base_url}" for r in replicas))
        url = f"http://127.0.0.1:{port}"
        yield Edge(url, url), replicas, Database(project)
    finally:
        project.run("down", "-v", "--remove-orphans", "--timeout", "10", check=False)


def _revision(image: str) -> str:
    out = subprocess.run(["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{REVISION_LABEL}"}}}}', image],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or UNKNOWN_BUILD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.targets.compose", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="cai-demo:latest", help="the replicas' image (default %(default)s; "
                        "nox -s image builds it)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command; {url}, {http_url}, {build} are filled in")
    args = parser.parse_args(argv)
    cmd = command(parser, args.cmd)
    say = lambda m: print(f"[compose] {m}", flush=True)  # noqa: E731
    with scale_fleet(args.image, say) as (edge, _, _):
        return run_against(cmd, edge, _revision(args.image), None, say)


if __name__ == "__main__":
    sys.exit(main())
