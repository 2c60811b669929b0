"""Targets as context managers: the constructor only stores options, `with` (or start()) starts and
waits, leaving the block stops and cleans up; a gate run stopped by SIGTERM leaves no app behind.
The app here is the stub served as a process (validation/testing/serve_stub.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from validation.targets import ProcessTarget, TargetError, UrlTarget, base

REPO = Path(__file__).resolve().parents[1]
STUB = {"GATE_APP_MODULE": "validation.testing.serve_stub"}


@pytest.fixture
def stub_module(monkeypatch):
    monkeypatch.setenv("GATE_APP_MODULE", STUB["GATE_APP_MODULE"])


def test_a_target_starts_only_when_entered_and_is_gone_after_the_block(stub_module):
    target = ProcessTarget(health_timeout=30)
    assert target.popen is None and target not in base._REGISTRY  # options only
    with target as t:
        assert t is target and t.health_seconds is not None
        assert httpx.get(f"{t.base_url}/health", timeout=5).json()["status"] == "healthy"
        pid, data = t.pid, t.checkpoint_dir.parent
        assert target in base._REGISTRY
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not data.exists() and target not in base._REGISTRY


def test_a_script_runs_with_the_apps_python_and_environment_where_the_app_runs(stub_module, tmp_path):
    """What perf's engine reference uses: the process target runs it with the app's interpreter and
    its environment; a URL target runs nothing of the gate's."""
    script = tmp_path / "probe.py"
    script.write_text("import os, sys; print(sys.executable, os.environ['CHECKPOINT_DIR'], sys.argv[1]); sys.exit(3)")
    with ProcessTarget(health_timeout=30) as t:
        code, out = t.run_python(script, ["arg"])
        assert code == 3 and out.split() == [t.cmd[0], str(t.checkpoint_dir), "arg"]
    assert UrlTarget("http://127.0.0.1:9").run_python(script, []) is None


def test_a_target_that_does_not_come_up_raises_with_its_log_and_is_cleaned_up(monkeypatch):
    monkeypatch.setenv("GATE_APP_MODULE", "validation.no_such_module")
    target = ProcessTarget(health_timeout=10)
    with pytest.raises(TargetError, match="did not become healthy") as exc, target:
        pass
    assert "No module named" in exc.value.log
    target.stop()
    assert target not in base._REGISTRY


def test_a_url_target_waits_for_an_answer_only_when_started():
    target = UrlTarget("http://127.0.0.1:1", health_timeout=1)  # nothing there: constructing is fine
    with pytest.raises(TargetError, match="does not answer"):
        target.start()


def test_sigterm_stops_the_gate_and_its_app(tmp_path):
    """The smoke gate on the process target waits for a /ready that never comes; SIGTERM then ends the
    run, and the app it started is gone."""
    env = {**os.environ, **STUB, "STUB_FAULTS": "never_ready", "GATE_SESSION": "smoke"}
    cmd = [sys.executable, "-m", "pytest", "validation/smoke", "-p", "no:cacheprovider", "-p", "no:playwright",
           "-p", "no:locust", "--target", "process", "-k", "test_ready", "--report-dir", str(tmp_path)]
    gate = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        app = _wait_for_child(gate.pid, STUB["GATE_APP_MODULE"], timeout=60)
        time.sleep(1)
        gate.send_signal(signal.SIGTERM)
        out, _ = gate.communicate(timeout=60)
    finally:
        gate.kill()
    assert gate.returncode != 0, out
    assert _gone(app, timeout=15), f"the app (pid {app}) outlived the gate:\n{out[-2000:]}"


def _wait_for_child(pid: int, module: str, timeout: float) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for child in psutil.Process(pid).children(recursive=True):
            if module in " ".join(child.cmdline()):
                return child.pid
        time.sleep(0.2)
    raise AssertionError(f"no {module} process started within {timeout} s")


def _gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False
