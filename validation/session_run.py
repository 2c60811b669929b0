"""One gate session run in a subprocess on the process target, its verdicts read from its report.json.

The faults session (a fault injected into the app) and the mutants session (a mutated copy of the
app) judge the app this way: the run is the same pytest command a user types, so a caught fault or
a killed mutant is one that the gate itself catches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300
BEHAVIOUR_RUN_TIMEOUT_S = 1200  # a behaviour fault's run trains `quick` and answers every held-out prompt


def run(session: str, tests: str, out: Path, fault: str | None = None, model: str = "tiny", profile: str = "plan",
        cwd: Path = REPO) -> dict:
    """`session` (-k `tests`; "" for all) on the process target with `model`, the app started through
    validation/faults/inject.py (with `fault`, or none), under the criteria `profile`; its report.json
    results (failed: id -> detail, passed: ids), its time and how it ended."""
    env = {**os.environ, "DEFAULT_MODEL": model, "GATE_APP_MODULE": "validation.faults.inject",
           "GATE_FAULT": fault or "", "GATE_SESSION": session, "GATE_MEMORY_TEST": "off"}
    cmd = [sys.executable, "-m", "pytest", f"validation/{session}", "-p", "no:cacheprovider", "-q",
           "-p", "no:playwright", "-p", "no:locust", "--target", "process", "--param", f"model={model}",
           "--health-timeout", "60", "--profile", profile, "--report-dir", str(out), *(["-k", tests] if tests else [])]
    out.mkdir(parents=True, exist_ok=True)
    timeout = RUN_TIMEOUT_S if model == "tiny" else BEHAVIOUR_RUN_TIMEOUT_S
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        ended = f"exit {proc.returncode}"
        (out / "pytest.log").write_text(proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired as exc:
        ended = f"timed out after {timeout} s"
        (out / "pytest.log").write_text(str(exc.stdout or "") + str(exc.stderr or ""))
    seconds = time.perf_counter() - t0
    try:
        results = json.loads((out / "report.json").read_text())["results"]
    except (OSError, ValueError, KeyError):
        results = []
    failed = {r["id"]: r.get("detail", "") for r in results if r.get("verdict") == "fail"}
    passed = [r["id"] for r in results if r.get("verdict") == "pass"]
    return {"failed": failed, "passed": passed, "results": results, "seconds": seconds, "ended": ended}
