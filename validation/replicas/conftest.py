"""The replicas session's fleet: two process replicas, their Postgres and the balancer, started once
for the session (validation/targets/replicas.py) and removed after it; each replica's log is kept."""

from __future__ import annotations

import pytest

from validation import api
from validation.targets import replicas
from validation.targets.image import git_build_id


@pytest.fixture(scope="session")
def fleet(gate_config, report_dir, recorder, say):
    with replicas.fleet(2, {"BUILD_ID": git_build_id()}, gate_config.health_timeout, say) as f:
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
