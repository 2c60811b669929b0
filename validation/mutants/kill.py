"""`python -m validation.mutants.kill`: the test command the mutation tool runs on each mutant.

Run in the mutated copy of the tree, it exits 1 when a check kills the mutant and 0 when it
survives, and says which check it was on its last line ("killed by ...", "survived ..."):
1. the app's unit tests, the mutated module's own first, stopping at the first failure (cheap: most
   mutants die here in seconds);
2. the smoke gate on `tiny` on the process target (validation/session_run.py), as a user would run it.
The original tree ($GATE_MUTANTS_SOURCE) tells which module is mutated.
"""

from __future__ import annotations

import filecmp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from validation import session_run

# The modules that decide what a user sees, each with the unit tests that exercise it most.
MODULES = {
    "app/evaluation.py": ["tests/test_evaluation.py"],
    "app/behaviour.py": ["tests/test_behaviour.py"],
    "app/impact.py": ["tests/test_behaviour.py"],
    "app/stats.py": ["tests/test_behaviour.py"],
    "app/generation.py": ["tests/test_app_generation.py"],
    "app/service.py": ["tests/test_app_server.py", "tests/test_app_schemas.py"],
    "app/recipe.py": ["tests/test_behaviour.py", "tests/test_app_training.py"],
    "app/cai.py": ["tests/test_app_training.py"],
}
UNIT_TESTS = ["tests/test_evaluation.py", "tests/test_behaviour.py", "tests/test_constitution.py",
              "tests/test_app_generation.py", "tests/test_app_server.py",
              "tests/test_app_schemas.py", "tests/test_app_training.py", "tests/test_app_metrics.py",
              "tests/test_app_models.py", "tests/test_app_runs.py", "tests/test_app_config.py"]
TEST_TIMEOUT_S = 90  # a unit test that hangs on a mutant fails at this, not at the tool's per-mutant timeout
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def mutated(work: Path, source: Path) -> str | None:
    return next((m for m in MODULES if not filecmp.cmp(work / m, source / m, shallow=False)), None)


def unit_tests(module: str | None) -> str | None:
    """The first failing unit test's id, or None when they all pass."""
    first = MODULES.get(module or "", [])
    order = first + [t for t in UNIT_TESTS if t not in first]
    cmd = [sys.executable, "-m", "pytest", *order, "-x", "-q", "-p", "no:cacheprovider", f"--timeout={TEST_TIMEOUT_S}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    found = _FAILED.search(proc.stdout)
    return found.group(1) if found else f"pytest exit {proc.returncode}: {proc.stdout[-300:]}"


def smoke() -> str | None:
    """The criteria the smoke gate on tiny failed, or None when it passed."""
    with tempfile.TemporaryDirectory(prefix="mutant-smoke-") as out:
        res = session_run.run("smoke", "", Path(out), cwd=Path.cwd())
    if res["failed"]:
        return ", ".join(res["failed"])
    return None if res["ended"] == "exit 0" else f"the smoke run ({res['ended']})"


def main() -> int:
    t0 = time.perf_counter()
    module = mutated(Path.cwd(), Path(os.environ["GATE_MUTANTS_SOURCE"]))
    failed = unit_tests(module)
    if failed:
        print(f"killed by unit test {failed} ({time.perf_counter() - t0:.0f} s)")
        return 1
    failed = smoke()
    if failed:
        print(f"killed by smoke: {failed} ({time.perf_counter() - t0:.0f} s)")
        return 1
    print(f"survived the unit tests and the smoke gate on tiny ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
