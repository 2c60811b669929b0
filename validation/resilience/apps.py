"""App instances the resilience gate starts itself, on chosen host folders: containers (the container
target with chosen volumes, tmpfs, env and a fixed loopback port, so `docker restart` keeps the URL:
see conftest.AppFactory) and `python -m app` processes. Every instance registers with
validation.targets' cleanup (session end, atexit, SIGTERM) and carries the gate's container label, so a
crashed run's leftovers are swept like the framework's own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from validation import api
from validation import targets as T
from validation.targets.base import _make_data_dirs


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


def wait_ready(base_url: str, timeout: float = 180, auth=None) -> float:
    """Seconds until GET /ready answers 200 (the default model loaded); TargetError otherwise."""
    with api.Client(base_url=base_url, auth=auth) as client:
        state = api.wait_ready(client, timeout, interval=0.2)
    if not state["ok"]:
        raise T.TargetError(f"{base_url}/ready: not ready after {state['seconds']:.0f} s (last: {state['last']})")
    return state["seconds"]
