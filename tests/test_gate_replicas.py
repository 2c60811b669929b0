"""The replicas session's judging (validation/replicas/checks.py): each fault of a fleet is named."""

from dataclasses import replace

import pytest

from validation.replicas.checks import (
    Answer,
    Consistency,
    Kill,
    Outage,
    consistency_problems,
    lost_runs,
    outage_problems,
    outage_seconds,
)

RUNS = [("20261203-150000-smoke-aaaa", "cancelled"), ("20261203-140000-quick-bbbb", "succeeded")]
GOOD = Consistency("j-1", RUNS[0][0], {"job_id": "j-1", "run_id": RUNS[0][0], "state": "running"}, 409, 200, 0.4,
                   "cancelled", "cancelled", {"r1": RUNS, "r2": RUNS})


def test_a_fleet_that_acts_as_one_has_no_problem():
    assert consistency_problems(GOOD) == []


def test_each_way_a_fleet_falls_apart_is_named():
    cases = {
        "does not answer for job": replace(GOOD, seen_elsewhere=None),  # job state kept in memory
        "not 409": replace(GOOD, busy_elsewhere=202),  # a process lock, not the fleet's
        "cancel on the other replica": replace(GOOD, cancel_status=404),
        "the owner saw the cancel never": replace(GOOD, owner_saw_cancel_s=None),  # cancel applied only locally
        "after 3.5 s": replace(GOOD, owner_saw_cancel_s=3.5),
        "not cancelled": replace(GOOD, final_elsewhere="running"),
        "list different runs": replace(GOOD, runs={"r1": RUNS, "r2": RUNS[:1]}),
        "not listed as cancelled": replace(GOOD, runs={"r1": RUNS[1:], "r2": RUNS[1:]}),
    }
    for needle, broken in cases.items():
        problems = consistency_problems(broken)
        assert any(needle in p for p in problems), (needle, problems)


def test_a_kill_names_lost_or_changed_runs_and_bounds_the_outage():
    kept = Kill("interrupted", 14.0, dict(RUNS), dict(RUNS), [], 0.2)
    assert lost_runs(kept) == [] and outage_seconds(kept) == 0.0
    lost = replace(kept, after={RUNS[0][0]: "cancelled", RUNS[1][0]: "interrupted"})
    assert lost_runs(lost) == [f"{RUNS[1][0]} succeeded -> interrupted"]
    assert lost_runs(replace(kept, after={})) == [f"{r} {s} -> missing" for r, s in RUNS]
    assert outage_seconds(replace(kept, failures=[1.0, 1.2, 3.0])) == 2.0 + 0.2


def _outage(**change) -> Outage:
    answers = [Answer(via, request, status, True, 0.02) for via in ("r1", "r2", "edge")
               for request, status in (("GET /ready", 503), ("GET /api/runs", 503), ("GET /", 200))]
    return replace(Outage(answers, 0.4, dict(RUNS), {"r1": dict(RUNS), "r2": dict(RUNS)}), **change)


def test_a_database_outage_names_each_way_the_fleet_misbehaves():
    good = _outage()
    assert outage_problems(good, hang_s=8) == []
    plain_503 = [replace(a, json_error=False) if a.request == "GET /api/runs" else a for a in good.answers]
    cases = {
        "-> 500": _outage(answers=[*good.answers, Answer("r1", "POST /api/generate", 500, True, 0.1)]),
        "(not JSON)": _outage(answers=plain_503),  # e.g. the balancer's own error page
        "no answer": _outage(answers=[*good.answers, Answer("edge", "GET /api/runs", None, False, 10.0)]),
        "after 9.0 s": _outage(answers=[*good.answers, Answer("r2", "GET /api/models", 200, False, 9.0)]),
        "/ready did not answer 503": _outage(answers=[replace(a, status=200) if a.request == "GET /ready" else a
                                                      for a in good.answers]),
        "did not recover": _outage(recovered_s=None),
        "r2 lost or changed runs": _outage(after={"r1": dict(RUNS), "r2": dict(RUNS[:1])}),
    }
    for needle, broken in cases.items():
        problems = outage_problems(broken, hang_s=8)
        assert any(needle in p for p in problems), (needle, problems)


def test_the_fleet_launchers_refuse_to_start_without_a_command(capsys):
    from validation.targets import compose, replicas
    for main in (compose.main, replicas.main):
        with pytest.raises(SystemExit) as exited:
            main(["--"])
        assert exited.value.code == 2 and "no command after --" in capsys.readouterr().err
