"""The gate's pure logic: criteria.toml, comparisons, the report (no servers, no docker)."""

from __future__ import annotations

import json

import pytest

from validation import criteria as C
from validation import report as R
from validation.gate import CriterionFailed, Recorder
from validation.testing import make_gate

PLAN_CRITERIA = {  # every number of the deployment plan's success criteria must be in the plan profile
    "image.build_time": 300,
    "image.size": 2.5,
    "container.log_errors": 0,
    "health.status": 200,
    "model.load_time": 30,
    "evaluate.time": 5,
    "train.quick_time": 900,
    "perf.response_p95": 5,
    "perf.load_success": 95,
    "perf.error_rate": 1,
    "perf.memory_peak": 7,
    "perf.cpu": 80,
    "data.loss": 0,
    "cost.monthly": 30,
}


def test_criteria_file_loads_for_every_profile():
    for profile in C.profiles():
        crit = C.load(profile)
        assert crit.items, profile
        for c in crit.items.values():
            assert c.direction in C.DIRECTIONS and c.sessions and c.description


def test_plan_profile_has_the_plans_numbers():
    plan = C.load("plan")
    for cid, value in PLAN_CRITERIA.items():
        assert plan[cid].threshold == value, cid
    assert plan.param("load_requests") == 100 and plan.param("load_users") == 10


def test_strict_inherits_and_overrides():
    plan, strict = C.load("plan"), C.load("strict")
    assert strict["image.size"].threshold == 1.6 and plan["image.size"].threshold == 2.5
    assert strict["health.status"].threshold == 200  # inherited
    assert strict.param("train_preset") == "smoke"


def test_ci_profile_is_the_plan_but_named_regression_bounds():
    """CI's profile (README): only two behaviour bounds, the p95 under load and sustained CPU differ from
    the plan's, as looser bounds that can still be crossed, and one is stricter (a fleet's lapsed lease
    is found sooner); every other threshold and parameter is the plan's."""
    plan, ci = C.load("plan"), C.load("ci")
    differ = {cid for cid in plan.items if ci[cid].threshold != plan[cid].threshold}
    stricter = {"replicas.kill_one"}
    assert differ == {"perf.response_p95", "perf.cpu", "behaviour.harm_reduced", "behaviour.over_refusal", *stricter}
    for cid in stricter:
        assert ci[cid].threshold < plan[cid].threshold and C.compare(ci[cid], ci[cid].threshold), cid
    for cid in differ - stricter:
        assert plan[cid].threshold < ci[cid].threshold <= max(3 * plan[cid].threshold, 15), cid
        assert not C.compare(ci[cid], ci[cid].threshold * 1.01 + 0.01), cid  # crossed: fails
    assert ci["perf.cpu"].threshold < 100  # still a bound: an app that takes every core fails
    assert ci.params == plan.params


def test_ci_avx2_profile_is_ci_but_four_host_bounds():
    """CI on a host without AVX-512 (.ci/run): ci's thresholds but the build time, the browser's
    generate time, the p95 under load and ten users' tokens/s, each looser and still crossable."""
    ci, slow = C.load("ci"), C.load("ci-avx2")
    differ = {cid for cid in ci.items if slow[cid].threshold != ci[cid].threshold}
    assert differ == {"image.build_time", "e2e.generate_time", "perf.response_p95", "perf.users_tokens_per_s"}
    for cid in differ:
        looser = slow[cid].threshold > ci[cid].threshold if slow[cid].direction == "max" else \
            slow[cid].threshold < ci[cid].threshold
        crossed = slow[cid].threshold * (1.01 if slow[cid].direction == "max" else 0.99)
        assert looser and not C.compare(slow[cid], crossed), cid
    assert slow.params == ci.params


def test_unknown_profile_and_criterion_are_errors():
    with pytest.raises(C.CriteriaError, match="no profile 'nope'"):
        C.load("nope")
    with pytest.raises(C.CriteriaError, match="no criterion"):
        C.load("plan")["no.such"]


def test_bad_criteria_data_is_rejected():
    base = {"profiles": {"plan": {}}}
    with pytest.raises(C.CriteriaError, match="direction"):
        C.from_dict({**base, "criteria": {"x": {"direction": "up", "threshold": {"plan": 1}, "sessions": ["s"]}}})
    with pytest.raises(C.CriteriaError, match="no threshold"):
        C.from_dict({**base, "criteria": {"x": {"direction": "max", "threshold": {}, "sessions": ["s"]}}})
    with pytest.raises(C.CriteriaError, match="unknown profile"):
        C.from_dict({**base, "criteria": {"x": {"direction": "max", "threshold": {"plan": 1, "zz": 2}, "sessions": ["s"]}}})


def _c(direction, threshold, exclusive=False, unit="s"):
    return C.Criterion("x", "x", unit, direction, threshold, ("s",), exclusive=exclusive)


@pytest.mark.parametrize(
    ("crit", "value", "ok"),
    [
        (_c("max", 5), 5, True),
        (_c("max", 5, True), 5, False),
        (_c("max", 5), 5.01, False),
        (_c("min", 95, True), 95, False),
        (_c("min", 95, True), 96, True),
        (_c("min", 95), 95, True),
        (_c("eq", 200), 200, True),
        (_c("eq", 200), 500, False),
        (_c("eq", "healthy"), "ok", False),
        (_c("eq", True), True, True),
        (_c("eq", True), 1, False),
        (_c("eq", True), False, False),
        (_c("eq", []), [], True),
        (_c("eq", []), ["gcc"], False),
        (_c("not_in", ["", "root", "0"]), "10001:10001", True),
        (_c("not_in", ["", "root"]), "", False),
        (_c("contains", "7860/tcp"), ["7860/tcp"], True),
        (_c("contains", "7860/tcp"), [], False),
        (_c("max", 5), None, False),
        (_c("max", 5), float("nan"), False),
        (_c("max", 5), "fast", False),
        (_c("in", [1, 2]), 2, True),
        (_c("ne", 0), 0, False),
    ],
)
def test_compare(crit, value, ok):
    assert C.compare(crit, value) is ok


def test_threshold_and_value_text():
    assert _c("max", 30, True).threshold_text == "< 30 s"
    assert _c("max", 1.5, unit="GB").threshold_text == "<= 1.5 GB"
    assert _c("eq", [], unit="list").threshold_text == "= none"
    assert C.fmt_value(0.0123, "s") == "0.012 s"
    assert C.fmt_value(True, "bool") == "yes"
    assert C.fmt_value(["gcc", "make"], "list") == "gcc, make"


def test_measure_fails_with_criterion_threshold_and_value():
    gate = make_gate("plan")
    gate.measure("health.status", 200)
    with pytest.raises(CriterionFailed) as info:
        gate.measure("model.load_time", 42.5, detail="POST /api/models/load")
    msg = str(info.value)
    assert "[model.load_time] FAILED" in msg and "measured 42.5 s" in msg and "threshold < 30 s" in msg
    assert "POST /api/models/load" in msg
    assert [r.verdict for r in gate.recorder.results] == ["pass", "fail"]


def test_soft_measures_collect_then_raise():
    gate = make_gate("plan")
    gate.measure("health.status", 500, soft=True)
    gate.measure("health.body", "ok", soft=True)
    with pytest.raises(CriterionFailed) as info:
        gate.raise_pending()
    assert "[health.status] FAILED" in str(info.value) and "[health.body] FAILED" in str(info.value)


def test_skip_is_recorded_with_reason_never_as_pass():
    gate = make_gate("plan")
    with pytest.raises(pytest.skip.Exception):
        gate.skip("image.size", "url target: no image")
    (r,) = gate.recorder.results
    assert r.verdict == "skip" and r.reason == "url target: no image"


def test_measure_on_a_target_the_criterion_does_not_apply_to_is_a_skip():
    gate = make_gate("plan", target_kind="url")
    with pytest.raises(pytest.skip.Exception):
        gate.measure("image.size", 1.0)
    assert gate.recorder.results[0].verdict == "skip"


def test_timed_measures_the_block():
    gate = make_gate("plan")
    with gate.timed("evaluate.time"):
        pass
    assert gate.recorder.results[0].verdict == "pass"


def _report(results, session="smoke", kind="container", exit_status=0):
    crit = C.load("plan")
    return R.build(
        session=session,
        criteria=crit,
        target={"kind": kind, "base_url": "http://x"},
        results=results,
        attachments=[{"title": "container log", "path": "/r/target.log"}],
        timings={"build": 1.0},
        tests={"passed": 1},
        exit_status=exit_status,
        started_at=0.0,
        finished_at=10.0,
    )


def test_summary_lists_every_criterion_once_with_a_verdict_or_reason():
    rec = Recorder(C.load("plan"), "url", "smoke")
    g = rec.gate("t")
    g.measure("health.status", 200)
    g.measure("evaluate.time", 0.01)
    g.measure("evaluate.time", 0.03)
    with pytest.raises(pytest.skip.Exception):
        g.skip("image.size", "url target: no image")
    rows = R.summarize(rec.criteria, "smoke", "url", rec.results)
    assert sorted(r.id for r in rows) == sorted(rec.criteria.items)
    by = {r.id: r for r in rows}
    assert by["health.status"].verdict == "pass"
    assert by["evaluate.time"].measured == "0.03 s" and by["evaluate.time"].count == 2
    assert by["image.size"].verdict == "skip" and "url target" in by["image.size"].note
    assert by["image.compilers"].verdict == "skip" and "url" in by["image.compilers"].note
    assert by["model.load_time"].verdict == "not run"
    assert by["perf.response_p95"].verdict == "elsewhere" and "nox -s perf" in by["perf.response_p95"].note
    assert all(r.verdict != "pass" for r in rows if r.id not in ("health.status", "evaluate.time"))


def test_report_renders_markdown_json_and_terminal(tmp_path):
    rec = Recorder(C.load("plan"), "container", "smoke")
    rec.gate("t").measure("health.status", 200)
    with pytest.raises(CriterionFailed):
        rec.gate("t").measure("image.size", 3.1)
    rep = _report(rec.results, exit_status=1)
    assert not rep["passed"]
    js, md = R.write(rep, tmp_path)
    text = md.read_text()
    assert "| criterion | threshold | measured | verdict | note |" in text
    assert "| `image.size`" in text and "3.1 GB" in text and "**FAIL**" in text
    assert "[container log](" in text and "FAILED" in text.splitlines()[0]
    assert json.loads(js.read_text())["rows"]
    term = R.render_terminal(rep)
    assert "image.size" in term and "FAIL" in term and "health.status" in term


def test_the_gates_image_build_carries_the_git_sha_as_build_id(tmp_path):
    import subprocess

    from validation.targets import REPO, default_build_args, git_build_id, image_revision

    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "dev"
    assert git_build_id() == sha and default_build_args()["BUILD_ID"] == sha
    (tmp_path / "Dockerfile").write_text("FROM scratch\nARG BUILD_ID=dev\n")
    assert default_build_args(tmp_path)["BUILD_ID"] == "dev", "outside git: the Dockerfile's default"
    assert image_revision({"Config": {"Labels": {"org.opencontainers.image.revision": sha}}}) == sha
    assert image_revision({"Config": {"Labels": None}}) is None


def test_clock_counts_nested_waits_once_and_only_the_main_threads():
    import threading
    import time

    from validation.gate import Clock

    clock = Clock()
    with clock.spent("app"), clock.spent("engine"):  # nested: once, in the outer category
        time.sleep(0.05)
    worker = threading.Thread(target=lambda: clock.sleep(0.05))  # a background thread runs while main waits
    worker.start()
    worker.join()
    assert set(clock.spent_s) == {"app"} and 0.049 <= clock.spent_s["app"] < 0.5, clock.spent_s


def test_the_gates_http_client_counts_its_requests_as_app_time():
    import time

    import httpx

    from validation import api
    from validation.gate import CLOCK

    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.1)
        return httpx.Response(200, json={"state": "succeeded"})

    before = CLOCK.spent_s.get("app", 0.0)  # unrounded (totals() rounds to ms)
    with api.Client(base_url="http://app", transport=httpx.MockTransport(slow)) as http:
        assert api.poll_job(http, "j1", timeout=5)["state"] == "succeeded"
    assert CLOCK.spent_s["app"] - before >= 0.1


def test_the_final_training_states_agree_between_app_and_gate():
    """The app's FINAL_STATES and the gate's (validation/api.py, which the locustfile imports too): the
    gate reads the app from outside, so it keeps its own copy of the contract."""
    from app.training import FINAL_STATES as APP
    from validation.api import FINAL_STATES as GATE

    assert set(APP) == set(GATE)


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("url", {}, "needs a base URL"),
        ("container", {}, "needs an image tag"),
        ("vm", {}, "unknown target kind 'vm'"),
    ],
)
def test_start_target_refuses_what_it_cannot_start(kind, kwargs, message):
    from validation.targets import TargetError, start_target

    with pytest.raises(TargetError, match=message):
        start_target(kind, health_timeout=1, mem_limit="1g", **kwargs)


def test_the_gate_measures_generation_at_the_apps_default_length():
    """generate.time, e2e.generate_time (the UI's slider) and the perf load are judged at the length
    users get by default."""
    from app.schemas import DEFAULT_TOKENS

    assert C.load("plan").param("generate_max_new_tokens") == DEFAULT_TOKENS
