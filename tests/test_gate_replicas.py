"""The replicas session's judging (validation/replicas/checks.py): each fault of a fleet is named."""

from dataclasses import replace

from validation.replicas.checks import Consistency, Kill, consistency_problems, lost_runs, outage_seconds

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
