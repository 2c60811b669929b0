"""The replicas session's fleet, started once for the session and removed after it; each replica's log
is kept. On the container target: the compose `scale` profile with the gated image
(validation/targets/compose.py); otherwise two process replicas, their Postgres and the balancer
(validation/targets/replicas.py)."""

from __future__ import annotations

import contextlib

import pytest

from validation import api
from validation.targets import compose, replicas
from validation.targets.image import git_build_id


@contextlib.contextmanager
def _started(request, target_kind, gate_config, say):
    if target_kind == "container":
        with compose.scale_fleet(request.getfixturevalue("image")["tag"], say) as (edge, members, database):
            yield replicas.Fleet(edge, members, database, None)
    else:
        with replicas.fleet(2, {"BUILD_ID": git_build_id()}, gate_config.health_timeout, say) as f:
            yield f


@pytest.fixture(scope="session")
def fleet(request, target_kind, gate_config, report_dir, recorder, say):
    with _started(request, target_kind, gate_config, say) as f:
        try:
            for r in f.replicas:
                with api.Client(base_url=r.base_url, timeout=10) as c:
                    ready = api.wait_ready(c, gate_config.health_timeout, dead=r.dead)
                assert ready["ok"], f"{r.base_url} not ready: {ready['last']}"
            yield f
        finally:
            for i, r in enumerate(f.replicas, 1):
                path = r.save_log(report_dir / f"replica-r{i}.log")
                if path:
                    recorder.attach(path, f"replica r{i} log")
