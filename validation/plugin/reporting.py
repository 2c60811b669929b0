"""The gate plugin's reporting hooks: a soft failure fails its test, a failed test gets the target's
log tail attached, and the session ends with report.json, report.md and junit.xml in the report dir
and the criteria table printed; any failed criterion makes the exit status non-zero."""

from __future__ import annotations

import contextlib
import time

import pytest

from validation import report as report_mod
from validation import targets as targets_mod
from validation.gate import CLOCK, CriterionFailed, Recorder
from validation.plugin.config import gate_key, has_state, state


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    g = item.stash.get(gate_key, None)
    if rep.when == "call" and rep.passed and g is not None and g.pending:
        rep.outcome = "failed"
        rep.longrepr = "\n".join(r.message for r in g.pending)
    if rep.failed:
        st = state(item.config)
        t = st.target
        if t is not None and t.kind != "url":
            with contextlib.suppress(Exception):
                gone = t.dead()
                title = f"{t.kind} log (last 60 lines)" + (f" — {gone}" if gone else "")
                rep.sections.append((title, t.log_tail(60)))
    _count(item.config, rep)
    if rep.when == "teardown":
        rec = state(item.config).recorder
        for r in rec.results:
            if r.test == item.nodeid:
                item.user_properties.append((f"criterion {r.id}", f"{r.verdict}: {r.measured_text} ({r.threshold_text})"))


def _count(config: pytest.Config, rep: pytest.TestReport) -> None:
    tests = state(config).tests
    if rep.when == "call":
        tests["passed" if rep.passed else "failed" if rep.failed else "skipped"] += 1
    elif rep.failed:
        tests["error"] += 1
    elif rep.skipped:
        tests["skipped"] += 1


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not has_state(config):
        return
    targets_mod.cleanup_all()
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller writes the report
        return
    st = state(config)
    rec: Recorder = st.recorder
    now = time.time()
    timings = CLOCK.totals()
    wall = now - st.t0
    overhead = max(0.0, wall - sum(timings.values()))
    timings["overhead"] = round(overhead, 2)
    interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
    if interrupted:
        rec.note("the session was interrupted (Ctrl-C / SIGTERM): criteria not reached are `not run`")
    own = rec.criteria.items.get("harness.overhead")
    if own and rec.session in own.sessions and not interrupted and st.tests["passed"] + st.tests["failed"] > 0:
        with contextlib.suppress(CriterionFailed):
            rec.gate("session").measure(
                "harness.overhead",
                round(overhead, 2),
                detail=f"wall {wall:.1f} s - " + " - ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "overhead"),
            )
    if rec.failed() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    rep = report_mod.build(
        session=rec.session,
        criteria=rec.criteria,
        target=st.target_info,
        results=rec.results,
        attachments=rec.attachments,
        timings=timings,
        tests=st.tests,
        exit_status=int(session.exitstatus),
        started_at=st.t0,
        finished_at=now,
        notes=rec.notes,
        sections=rec.sections,
    )
    st.report = rep
    st.report_files = report_mod.write(rep, st.report_dir)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not has_state(config):
        return
    st = state(config)
    rep = st.report
    if not rep:
        return
    tr = terminalreporter
    mine = [r for r in rep["rows"] if r["verdict"] != report_mod.ELSEWHERE]
    verdict = "PASSED" if rep["passed"] else "FAILED"
    tr.section(
        f"gate: {rep['session']} on {rep['target'].get('kind')} (profile {rep['profile']}) {verdict}",
        sep="=",
        bold=True,
        red=not rep["passed"],
        green=rep["passed"],
    )
    if mine:
        tr.write_line(report_mod.render_terminal(rep, width=max(tr._tw.fullwidth, 100)))
    t = rep["timings"]
    if mine:
        tr.write_line(f"wall {rep['wall_s']} s: " + ", ".join(f"{k} {v} s" for k, v in t.items()))
    else:
        tr.write_line(f"no gate criteria in this session ({rep['session']}); wall {rep['wall_s']} s")
    js, md = st.report_files
    tr.write_line(f"report: {md}  ({js.name}, junit.xml)")
