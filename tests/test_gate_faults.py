"""The fault catalogue itself (validation/faults): every fault applies to the app as it is now
(a renamed function would make a fault silently test nothing), and the wrapper refuses unknown names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from validation.faults.catalogue import FAULTS

REPO = Path(__file__).resolve().parents[1]

APPLY_ALL = """
from validation.faults.catalogue import FAULTS
for name, fault in FAULTS.items():
    fault.apply()
    print("applied", name)
"""


def test_the_catalogue_has_at_least_20_faults_each_with_criteria_and_tests():
    assert len(FAULTS) >= 20
    from validation import criteria

    known = criteria.load("plan").items
    for f in FAULTS.values():
        assert f.expect and all(c in known for c in f.expect), f.name
        assert f.session in {"smoke", "e2e", "perf", "resilience", "replicas"} and f.tests, f.name


def test_every_fault_applies_to_the_current_app():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", APPLY_ALL], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [f"applied {name}" for name in FAULTS]


def test_the_wrapper_refuses_an_unknown_fault():
    env = {**os.environ, "PYTHONPATH": str(REPO), "GATE_FAULT": "no_such_fault"}
    out = subprocess.run([sys.executable, "-m", "validation.faults.inject"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no such fault" in out.stderr


def test_a_fault_counts_as_caught_only_by_a_criterion_it_names():
    from validation.faults.test_faults import judge

    fault = FAULTS["cancel_ignored"]
    run = {"seconds": 3.0, "ended": "exit 1"}
    assert judge(fault, {**run, "failed": {"train.cancel": "job ended 'succeeded'"}})["caught_by"] == ["train.cancel"]
    missed = judge(fault, {**run, "failed": {"health.status": "500"}})
    assert missed["caught_by"] == [] and missed["also_failed"] == ["health.status"]
    assert judge(fault, {**run, "failed": {}})["caught_by"] == []


def _result(cid: str, verdict: str, reason: str = "", detail: str = "") -> dict:
    return {"id": cid, "verdict": verdict, "reason": reason, "detail": detail}


def test_the_control_needs_every_expected_criterion_measured_and_passed():
    from validation.faults.test_faults import control_problems

    needed = ["evaluate.time", "memory.growth", "train.cancel"]
    all_pass = [_result(c, "pass") for c in needed] + [_result("harness.overhead", "pass")]
    assert control_problems(needed, all_pass) == ([], [])

    # a skipped criterion is not a passing one: the fault relying on it could never be caught
    skipped = [_result("evaluate.time", "pass"), _result("memory.growth", "skip", "GATE_MEMORY_TEST=off"),
               _result("train.cancel", "pass")]
    problems, which = control_problems(needed, skipped)
    assert which == ["memory.growth (GATE_MEMORY_TEST=off)"]
    assert problems == ["skipped memory.growth (GATE_MEMORY_TEST=off)"]

    # nor is one the control never measured (its test deselected or errored), even when all else passed
    problems, which = control_problems(needed, [_result("evaluate.time", "pass"), _result("memory.growth", "pass")])
    assert problems == ["not measured train.cancel"] and which == []

    # any failed criterion spoils the control, needed or not; measured once as pass and once skipped counts as passed
    mixed = all_pass + [_result("ready.time", "fail", detail="31 s"), _result("evaluate.time", "skip", "second test")]
    assert control_problems(needed, mixed) == (["failed ready.time"], [])

    # a control run that measured nothing at all
    problems, _ = control_problems(needed, [])
    assert problems == ["not measured evaluate.time, memory.growth, train.cancel"]


def test_a_verdict_that_changes_between_control_runs_is_named():
    from validation.faults.test_faults import changed_verdicts

    first = [_result("evaluate.time", "pass"), _result("train.cancel", "pass"), _result("memory.growth", "skip", "why")]
    assert changed_verdicts(first, list(first)) == []
    again = [_result("evaluate.time", "fail", detail="6 s"), _result("memory.growth", "skip", "why")]
    assert changed_verdicts(first, again) == ["evaluate.time pass -> fail", "train.cancel pass -> absent"]
