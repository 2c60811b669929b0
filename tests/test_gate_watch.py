"""The uptime watch's self-tests: its arithmetic on known rounds, its checks against a healthy and a
deliberately flaky stub (watch.uptime passes / fails, watch.probe_p95 fails on a slow stub), the restart
check, and `pytest validation/watch --base-url <stub>` end to end. ~25 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from validation.testing import expect_failure, make_gate
from validation.testing.stub_app import StubApp
from validation.watch import analysis as A
from validation.watch import verdicts, writeup
from validation.watch.probes import PROBES, Probe, Watcher
from validation.watch.restart import Restarter, restart_incident

ROOT = Path(__file__).resolve().parents[1]


def probes_of(pattern: str, interval: float = 10.0) -> list[Probe]:
    """One round per character: '.' up, 'r' /ready 503, 'x' nothing answers."""
    out = []
    for k, c in enumerate(pattern):
        for which in PROBES:
            bad = c == "x" or (c == "r" and which == "ready")
            status = None if c == "x" else (503 if bad else 200)
            out.append(Probe(k, which, 1000.0 + k * interval, k * interval, status, 0.01 * (k + 1), not bad,
                             "ConnectError: refused" if c == "x" else ""))
    return out


def run_watch(stub: StubApp, rounds: int, interval: float = 0.05, on_round=None) -> tuple[dict, list]:
    w = Watcher(lambda: stub.base_url, interval=interval, duration=rounds * interval, timeout=2)
    probes = w.run(on_round=on_round)
    s = writeup.summary(probes, interval=interval, duration=rounds * interval, base_url=stub.base_url)
    return s, A.rounds(probes, rounds)


# --- arithmetic ---------------------------------------------------------------------------------


def test_rounds_incidents_and_availability_from_known_probes():
    rs = A.rounds(probes_of("....rrx.....xx"))
    assert A.availability(rs) == pytest.approx(100 * 9 / 14, abs=1e-3)
    incs = A.incidents(rs, 10.0)
    assert [(i.start_s, i.end_s, i.rounds, i.ongoing) for i in incs] == [(40.0, 70.0, 3, False), (120.0, 140.0, 2, True)]
    assert incs[0].duration_s == 30.0 and incs[0].failed == {"ready 503": 2, "health no answer": 1,
                                                               "ready no answer": 1, "evaluate no answer": 1}


def test_a_round_that_overran_its_interval_counts_for_every_slot_it_covered():
    pr = probes_of("..x..")
    for p in pr:  # the down round took three slots: rounds 0, 1, 2, then 5, 6
        p.round = p.round if p.round < 3 else p.round + 2
    rs = A.rounds(pr)
    assert [r.slots for r in rs] == [1, 1, 3, 1, 1]
    assert A.availability(rs) == pytest.approx(100 * 4 / 7, abs=1e-3)
    assert [r.slots for r in A.rounds(pr, total_slots=9)][-1] == 3  # the last round ran to the end


def test_latency_percentiles_use_answered_probes_only():
    lat = A.latency(probes_of("..x"))
    assert lat["health"]["n"] == 3 and lat["health"]["answered"] == 2 and lat["health"]["p95_s"] == 0.02
    assert A.slowest_p95(lat) in {("health", 0.02), ("ready", 0.02), ("evaluate", 0.02)}
    assert A.slowest_p95(A.latency(probes_of("xx"))) == ("health", None)


def test_over_time_buckets_cover_every_round():
    pr = probes_of("." * 30 + "x" * 6, interval=2.0)
    rs = A.rounds(pr)
    width = A.bucket_seconds(72.0, 2.0)
    rows = A.over_time(pr, rs, width)
    assert sum(r["rounds"] for r in rows) == 36 and rows[-1]["up_pct"] < 100 and rows[0]["up_pct"] == 100


def test_csv_has_every_probe(tmp_path):
    path = writeup.write_csv(probes_of(".x"), tmp_path / "p.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("round,time_utc") and len(lines) == 1 + 2 * len(PROBES)
    assert "ConnectError" in lines[-1]


# --- checks against stubs -----------------------------------------------------------------------


def test_uptime_passes_on_a_healthy_stub():
    with StubApp() as stub:
        s, rs = run_watch(stub, 30)
    assert s["availability_pct"] == 100.0 and not s["incidents"]
    gate = make_gate("plan")
    verdicts.uptime(gate, s, rs, soft=False)
    verdicts.probe_p95(gate, s, soft=False)


def test_uptime_fails_when_the_stub_is_down_more_than_one_percent():
    with StubApp() as stub:

        def outage(k: int, _batch) -> None:  # down for rounds 10..13 of 40 (10 %)
            if k == 9:
                stub.faults.add("down")
            if k == 13:
                stub.faults.discard("down")

        s, rs = run_watch(stub, 40, on_round=outage)
    assert s["availability_pct"] == 90.0 and len(s["incidents"]) == 1
    inc = s["incidents"][0]
    assert inc["rounds"] == 4 and inc["failed"]["health 503"] == 4 and not inc["ongoing"]
    assert inc["duration_s"] == pytest.approx(4 * 0.05, abs=0.05)
    err = expect_failure(verdicts.uptime, make_gate("plan"), s, rs, soft=False, criterion="watch.uptime", measured="90 %")
    assert "longest" in str(err)


def test_uptime_fails_on_one_down_round_in_fifty():
    with StubApp() as stub:

        def blip(k: int, _batch) -> None:
            if k == 20:
                stub.faults.add("down")
            if k == 21:
                stub.faults.discard("down")

        s, rs = run_watch(stub, 50, on_round=blip)
    assert s["availability_pct"] == 98.0  # 1/50 down: 98 %, not > 99 %
    expect_failure(verdicts.uptime, make_gate("plan"), s, rs, soft=False, criterion="watch.uptime")


def test_probe_p95_fails_on_a_slow_stub_and_slow_rounds_cover_their_slots():
    with StubApp(slow=0.15) as stub:  # evaluate takes 0.15 s: each round covers two 0.1 s slots
        s, rs = run_watch(stub, 8, interval=0.1)
    assert s["rounds"] < s["slots"] == 8 and all(r.slots >= 1 for r in rs)
    expect_failure(verdicts.probe_p95, make_gate("plan", watch__probe_p95=0.1), s, soft=False,
                   criterion="watch.probe_p95")


class RestartingStub:
    """A stand-in target whose restart() takes the stub down for `outage` seconds (kind `process`)."""

    kind = "process"

    def __init__(self, stub: StubApp, outage: float) -> None:
        self.stub, self.outage, self.base_url = stub, outage, stub.base_url

    def restart(self) -> None:
        self.stub.faults.add("down")
        threading.Timer(self.outage, self.stub.faults.discard, args=("down",)).start()


def test_restart_is_recorded_as_one_incident_of_the_outage_length():
    interval = 0.1
    with StubApp() as stub:
        target = RestartingStub(stub, outage=1.0)
        w = Watcher(lambda: target.base_url, interval=interval, duration=4.0, timeout=2)
        box = {}

        def arm(k: int, _batch) -> None:
            if k == 0:
                box["r"] = Restarter(target, at_s=0.8, t0=w.started_at, poll_s=0.02)
                box["r"].start()

        probes = w.run(on_round=arm)
        box["r"].join(10)
    s = writeup.summary(probes, interval=interval, duration=4.0, base_url=stub.base_url, restart=box["r"].result())
    assert s["restart"]["outage_s"] == pytest.approx(1.0, abs=0.3)
    restart_incident(make_gate("plan", target_kind="process"), s, interval, soft=False)
    verdicts.uptime(make_gate("plan"), s, A.rounds(probes, 40), soft=False)  # the restart's window is left out
    # A watch that missed the restart, or saw it too long, fails the restart check.
    missed = {**s, "incidents": [], "availability_pct": 100.0}
    expect_failure(restart_incident, make_gate("plan", target_kind="process"), missed, interval, soft=False,
                   criterion="watch.restart_incident", measured="no")
    longer = {**s, "incidents": [{**s["incidents"][0], "end_s": s["incidents"][0]["end_s"] + 5,
                                  "duration_s": s["incidents"][0]["duration_s"] + 5}]}
    expect_failure(restart_incident, make_gate("plan", target_kind="process"), longer, interval, soft=False,
                   criterion="watch.restart_incident")


# --- the session end to end on the url target -----------------------------------------------------


def run_session(base_url: str, report_dir: Path, *extra: str) -> tuple[int, str, dict]:
    cmd = [sys.executable, "-m", "pytest", "validation/watch", "--base-url", base_url, "--report-dir", str(report_dir),
           "-p", "no:cacheprovider", "-p", "no:playwright", "-p", "no:locust", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GATE_SESSION": "watch"})
    return proc.returncode, proc.stdout + proc.stderr, json.loads((report_dir / "report.json").read_text())


def test_watch_session_on_a_healthy_stub_passes_and_writes_its_files(tmp_path):
    with StubApp() as stub:
        code, out, report = run_session(stub.base_url, tmp_path, "--minutes", "0.05", "--interval", "0.25")
    assert code == 0, out
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["watch.uptime"]["verdict"] == "pass" and rows["watch.uptime"]["measured"] == "100 %"
    assert rows["watch.restart_incident"]["verdict"] == "skip" and rows["watch.restart_incident"]["note"]
    sec = report["sections"][0]
    assert sec["title"] == "Uptime watch" and sec["data"]["rounds"] == 12
    assert (tmp_path / "watch-probes.csv").exists() and (tmp_path / "watch-latency.png").stat().st_size > 5000
    assert "## Uptime watch" in (tmp_path / "report.md").read_text()
    assert "watch 1/12" in out  # progress lines


def test_watch_session_on_a_flaky_stub_fails_naming_uptime(tmp_path):
    with StubApp() as stub:

        def outage() -> None:  # down for 1 s from the watch's third round on (the subprocess starts slowly)
            while sum(r == "POST /api/evaluate" for r in stub.requests) < 3:
                time.sleep(0.01)
            stub.faults.add("down")
            time.sleep(1.0)
            stub.faults.discard("down")

        threading.Thread(target=outage, daemon=True).start()
        code, out, report = run_session(stub.base_url, tmp_path, "--minutes", "0.06", "--interval", "0.2")
    assert code == 1, out
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["watch.uptime"]["verdict"] == "fail", rows["watch.uptime"]
    assert "[watch.uptime] FAILED" in out
    incs = report["sections"][0]["data"]["incidents"]
    assert len(incs) == 1 and incs[0]["duration_s"] == pytest.approx(1.0, abs=0.5)


def test_restart_at_on_a_url_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "validation/watch", "--base-url", "http://127.0.0.1:9",
                           "--restart-at", "5", "--report-dir", str(tmp_path), "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "GATE_SESSION": "watch"})
    assert proc.returncode == 4 and "--restart-at restarts the app" in proc.stderr + proc.stdout


class _Config:
    def __init__(self, **given):
        self.given = {"--target": "auto", "--base-url": None, "--minutes": None, "--interval": None,
                      "--restart-at": None, "--probe-timeout": 10.0, **given}

    def getoption(self, name, default=None):
        return self.given.get(name, default)


@pytest.mark.parametrize("given, expected", [
    ({"--target": "container"}, (1.0, 2.0, 20.0)),                       # the CI run: a restart 20 s in
    ({"--base-url": "https://x.fly.dev"}, (5.0, 10.0, None)),             # a live URL: never restarted
    ({"--target": "process", "--minutes": 3.0}, (3.0, 2.0, None)),       # shaped by hand: no restart unless asked
    ({"--target": "container", "--restart-at": -1.0}, (1.0, 2.0, None)),
    ({"--target": "container", "--minutes": 2.0, "--restart-at": 30.0}, (2.0, 2.0, 30.0)),
])
def test_watch_defaults_follow_the_target(given, expected):
    from validation.watch.conftest import options

    on_url = given.get("--target") == "url" or bool(given.get("--base-url"))  # GateConfig.on_url
    o = options(_Config(**given), on_url)
    assert (o.minutes, o.interval, o.restart_at) == expected
