"""The uptime watch: GET /health, GET /ready and one evaluation every --interval seconds for
--minutes, then availability (watch.uptime), latency (watch.probe_p95) and, with --restart-at, whether
the watch recorded the injected restart right (watch.restart_incident).

    nox -s watch -- --base-url https://cai-demo.fly.dev --minutes 5
    nox -s watch -- --target container --minutes 1 --interval 2 --restart-at 20

The watch runs once (the `watch_run` fixture) after GET /ready answers 200; the report section, the
CSV of every probe and the plot are written even when a criterion fails.
"""

from __future__ import annotations

import pytest

from validation.gate import CLOCK
from validation.watch import analysis as A
from validation.watch import verdicts, writeup
from validation.watch.plot import plot_watch
from validation.watch.probes import Probe, Watcher
from validation.watch.restart import Restarter, restart_incident

pytestmark = pytest.mark.watch


def _progress(say, w: Watcher):
    every = max(1, round(2.0 / w.interval))  # at most about one line per 2 s, and every change of state
    last = {"up": True}

    def on_round(k: int, batch: list[Probe]) -> None:
        up = all(p.ok for p in batch)
        if k % every == 0 or up != last["up"] or k == w.rounds_planned - 1:
            parts = " · ".join(
                f"{p.which} {p.status if p.status is not None else p.error.split(':', 1)[0]} {p.latency_s * 1000:.0f} ms"
                for p in batch
            )
            say(f"watch {k + 1}/{w.rounds_planned} +{batch[0].t_s:.1f} s {'up  ' if up else 'DOWN'} {parts}")
        last["up"] = up

    return on_round


@pytest.fixture(scope="session")
def watch_run(target, auth, say, report_dir, recorder, watch_options, app_ready) -> dict:
    if not app_ready["ok"]:
        pytest.fail(f"the app never became ready before the watch (GET /ready: {app_ready['last']})", pytrace=False)
    o = watch_options
    w = Watcher(lambda: target.base_url, interval=o.interval, duration=o.duration, timeout=o.probe_timeout, auth=auth)
    restarter: dict = {}
    say(f"watch: {target.base_url} every {o.interval:g} s for {o.duration:g} s ({w.rounds_planned} rounds)"
        + (f", restart at +{o.restart_at:g} s" if o.restart_at is not None else ""))
    progress = _progress(say, w)

    def on_round(k: int, batch: list[Probe]) -> None:
        if k == 0 and o.restart_at is not None:  # the restart is timed from the watch's start
            restarter["r"] = Restarter(target, at_s=o.restart_at, t0=w.started_at, auth=auth)
            restarter["r"].start()
        progress(k, batch)

    with CLOCK.spent("app"):
        probes = w.run(on_round=on_round)
        r = restarter.get("r")
        if r is not None:
            r.join(r.timeout + 30)
    restart = r.result() if r is not None else None
    if restart:
        say(f"restart: {restart}")
    s = writeup.summary(probes, interval=o.interval, duration=o.duration, base_url=target.base_url, restart=restart)
    csv_path = writeup.write_csv(probes, report_dir / "watch-probes.csv")
    title = (f"{target.base_url}: availability {s['availability_pct']} %, {len(s['incidents'])} incident(s), "
             f"every {o.interval:g} s for {o.duration:g} s")
    png = plot_watch(report_dir / "watch-latency.png", probes, s["incidents"], title=title, restart=restart)
    s["files"] = {"csv": csv_path.name, "plot": png.name}
    recorder.section(writeup.SECTION_TITLE, writeup.markdown(s, {"probes (CSV)": csv_path.name, "plot": png.name}), data=s)
    recorder.attach(csv_path, "watch: every probe (CSV)")
    recorder.attach(png, "watch: latency over time, down periods shaded")
    say(f"watch done: availability {s['availability_pct']} % ({s['rounds_up']}/{s['rounds']} rounds up), "
        f"{len(s['incidents'])} incident(s), {s['downtime_s']:g} s down")
    return {"summary": s, "rounds": A.rounds(probes, A.slots_planned(o.duration, o.interval)), "options": o}


def test_uptime(gate, watch_run):
    verdicts.uptime(gate, watch_run["summary"], watch_run["rounds"], soft=False)


def test_probe_latency(gate, watch_run):
    verdicts.probe_p95(gate, watch_run["summary"], soft=False)


def test_restart_recorded(gate, target_kind, watch_run):
    gate.require("watch.restart_incident")
    if watch_run["summary"]["restart"] is None:
        gate.skip("watch.restart_incident", "no restart injected (--restart-at not given)")
    restart_incident(gate, watch_run["summary"], watch_run["options"].interval, soft=False)
