"""Fixtures of the resilience gate: app instances of its own (containers with chosen volumes, tmpfs,
env; processes with chosen env), always removed, and the tally of injected faults."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from validation import targets as T
from validation.gate import CriterionFailed
from validation.plugin import state
from validation.resilience.apps import DataDirs

FAULT_CRITERIA = [
    "resilience.faults_survived",
    "resilience.recovery_time",
    "resilience.errors_outside_restart",
    "resilience.killed_run_state",
    "resilience.partial_checkpoints",
    "resilience.checkpoint_loadable",
    "resilience.train_after_fault",
    "resilience.sigterm_consistent",
    "resilience.sigterm_stop",
    "resilience.disk_full",
    "resilience.oom_killed",
    "data.loss",
]


@pytest.fixture(scope="session")
def image_tag(request, target_kind) -> str | None:
    """The image under test (the framework's `image` fixture: built once, or --image)."""
    if target_kind != "container":
        return None
    return request.getfixturevalue("image")["tag"]


def model_cache_dir() -> Path:
    return Path(os.environ.get("MODEL_CACHE_DIR") or T.REPO / "demo" / "models").resolve()


class AppFactory:
    """Starts apps on the session's target kind; stops every one at teardown."""

    def __init__(self, kind: str, image: str | None, say, health_timeout: float, mem_limit: str):
        self.kind, self.image, self.say = kind, image, say
        self.health_timeout, self.mem_limit = health_timeout, mem_limit
        self.started: list[T.Target] = []
        self.data: list[DataDirs] = []
        self.extra_dirs: list[Path] = []  # removed at teardown too

    def data_dirs(self, prefix: str) -> DataDirs:
        d = DataDirs.make(prefix)
        self.data.append(d)
        return d

    def container(self, env: dict[str, str] | None = None, data: DataDirs | None = None,
                  tmpfs: dict[str, str] | None = None) -> T.ContainerTarget:
        """The image on `data`'s folders (None: no volumes) and `tmpfs` mounts, on a fixed loopback port."""
        assert self.image, "container apps need the container target"
        c = T.ContainerTarget(self.image, env=env, mem_limit=self.mem_limit, health_timeout=self.health_timeout,
                              data_dirs=(data.checkpoints, data.logs) if data else None, volumes=bool(data),
                              host_port=T.free_port(), tmpfs=tmpfs, say=self.say)
        self.started.append(c)
        return c.start()

    def process(self, env: dict[str, str] | None = None) -> T.ProcessTarget:
        """`python -m app` with extra env (its own tmp checkpoint and log folders)."""
        p = T.ProcessTarget(env=env, say=self.say, health_timeout=self.health_timeout)
        self.started.append(p)
        return p.start()

    def app(self, env: dict[str, str] | None = None) -> T.Target:
        if self.kind == "container":
            return self.container(env)
        if self.kind == "process":
            return self.process(env)
        pytest.skip("the url target: the gate cannot start an app with its own settings")

    def close(self) -> None:
        for t in self.started:
            with contextlib.suppress(Exception):
                t.stop()
        for d in self.data:
            d.remove()
        for p in self.extra_dirs:
            shutil.rmtree(p, ignore_errors=True)


@pytest.fixture(scope="module")
def apps(pytestconfig, target_kind, image_tag, say, recorder):
    f = AppFactory(
        target_kind,
        image_tag,
        say,
        state(pytestconfig).config.health_timeout,
        str(recorder.criteria.param("memory_limit")),
    )
    try:
        yield f
    finally:
        for t in f.started:  # keep each app's log next to the report
            with contextlib.suppress(Exception):
                path = state(pytestconfig).report_dir / f"app-{getattr(t, 'name', t.kind)}-{id(t) % 10**6}.log"
                if t.save_log(path):
                    recorder.attach(path, f"resilience app log ({getattr(t, 'name', t.kind)})")
        f.close()


@pytest.fixture(scope="session")
def fault_tally(recorder, target_kind):
    """Faults injected: {name: survived}. At the end: resilience.faults_survived (% survived)."""
    tally: dict[str, bool] = {}
    yield tally
    if not tally:
        return
    survived = [k for k, v in tally.items() if v]
    g = recorder.gate("resilience:faults")
    g.recorder.target_kind = target_kind
    with contextlib.suppress(CriterionFailed):
        g.measure(
            "resilience.faults_survived",
            round(100.0 * len(survived) / len(tally), 1),
            detail=f"{len(survived)}/{len(tally)}: "
            + ", ".join(f"{k} {'survived' if v else 'NOT survived'}" for k, v in tally.items()),
        )
