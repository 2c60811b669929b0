"""The watch's criteria: availability (watch.uptime) and the slowest probe's p95 (watch.probe_p95), measured
from a watch summary (writeup.summary). The restart's own check is restart.restart_incident."""

from __future__ import annotations

from validation.gate import Gate
from validation.watch import analysis as A


def uptime(gate: Gate, summary: dict, rounds: list[A.Round], soft: bool = True) -> None:
    """Availability over the rounds; with an injected restart, over the rounds outside its window
    (issued .. ready again, widened by min(1 s, interval) each side): the restart is the test's own
    doing, reported beside."""
    r = summary.get("restart")
    n_all, avail_all = len(rounds), A.availability(rounds)
    if r and r.get("issued_s") is not None:
        end = r["back_s"] if r.get("back_s") is not None else float("inf")
        slack = min(1.0, summary["interval_s"])
        inside, outside = A.window_rounds(rounds, r["issued_s"] - slack, end + slack)
        avail = A.availability(outside)
        detail = (f"{sum(x.up for x in outside)}/{len(outside)} rounds up outside the injected restart's window "
                  f"({len(inside)} rounds inside it); all rounds: {avail_all} %")
    else:
        avail = avail_all
        detail = f"{sum(x.up for x in rounds)}/{n_all} rounds up, {len(summary['incidents'])} incident(s)"
        if summary["incidents"]:
            worst = max(summary["incidents"], key=lambda i: i["duration_s"])
            detail += f"; longest {worst['duration_s']:.1f} s from +{worst['start_s']:.1f} s ({', '.join(worst['failed'])})"
    if avail is None:
        gate.fail("watch.uptime", None, "no probe round ran" + (" outside the restart's window" if r else ""))
    gate.measure("watch.uptime", avail, detail=detail, soft=soft)


def probe_p95(gate: Gate, summary: dict, soft: bool = True) -> None:
    which, p95 = A.slowest_p95(summary["latency"])
    if p95 is None:
        gate.fail("watch.probe_p95", None, f"no {which} probe answered")
    others = ", ".join(f"{w} {v['p95_s'] * 1000:.0f} ms" for w, v in summary["latency"].items())
    gate.measure("watch.probe_p95", round(p95, 4), detail=f"slowest: {which}; p95 {others}", soft=soft)
