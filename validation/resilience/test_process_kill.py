"""On the process target: `python -m app` killed (SIGKILL) mid-training, then a new process on the
same checkpoint folder must report the run it left as `interrupted`, with no half-written checkpoint.
The container target does the same with docker in test_faults.py (test_sigkill_mid_training)."""

from __future__ import annotations

import signal

import pytest

from validation import api
from validation.resilience import data_checks
from validation.resilience.apps import wait_ready

pytestmark = pytest.mark.resilience


def test_sigkill_process_mid_training(gate, apps, target_kind, say):
    if target_kind != "process":
        pytest.skip(f"{target_kind} target: test_faults.py::test_sigkill_mid_training kills the container")
    data = apps.data_dirs("kill")
    env = {"CHECKPOINT_DIR": str(data.checkpoints), "LOG_DIR": str(data.logs)}
    app = apps.process(env)
    wait_ready(app.base_url)
    with api.Client(base_url=app.base_url, timeout=60) as c:
        job = api.start_training(c, "quick", until=api.mid_training)
    say(f"SIGKILL pid {app.pid} with run {job['run_id']} {job['state']}/{job['phase']} at step {job['step']}")
    app.popen.send_signal(signal.SIGKILL)
    app.popen.wait(30)
    app.stop()
    new = apps.process(env)  # a new process on the same folders
    wait_ready(new.base_url)
    with api.Client(base_url=new.base_url, timeout=60) as c:
        listed = c.get("/api/runs").json()["runs"]
    data_checks.interrupted_run(gate, job["run_id"], data_checks.snapshot_runs(data.checkpoints), listed,
                            "SIGKILL of the process mid-training + a new process")
