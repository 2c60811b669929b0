"""The watch written down: every probe as CSV, the summary as a report.md section (and its data for
report.json)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from validation.watch import analysis as A
from validation.watch.probes import PROBES, Probe

CSV_FIELDS = ["round", "time_utc", "t_s", "probe", "status", "latency_ms", "ok", "error"]
SECTION_TITLE = "Uptime watch"  # the report section (its data: `summary`); the cost check reads it


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def write_csv(probes: list[Probe], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_FIELDS)
        for p in probes:
            w.writerow([p.round, iso(p.t), f"{p.t_s:.3f}", p.which, "" if p.status is None else p.status,
                        f"{p.latency_s * 1000:.1f}", int(p.ok), p.error])
    return path


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1000:.0f} ms" if v < 10 else f"{v:.1f} s"


def summary(
    probes: list[Probe], *, interval: float, duration: float, base_url: str, restart: dict | None = None
) -> dict:
    """Everything the report says about the watch, as data (report.json's section)."""
    rs = A.rounds(probes, A.slots_planned(duration, interval))
    incs = A.incidents(rs, interval)
    width = A.bucket_seconds(duration, interval)
    lat = A.latency(probes)
    return {
        "base_url": base_url,
        "interval_s": interval,
        "duration_s": duration,
        "started": iso(probes[0].t) if probes else None,
        "rounds": len(rs),
        "rounds_up": sum(r.up for r in rs),
        "slots": sum(r.slots for r in rs),  # > rounds when rounds overran their interval
        "availability_pct": A.availability(rs),
        "incidents": [i.to_dict() for i in incs],
        "downtime_s": round(sum(i.duration_s for i in incs), 3),
        "latency": lat,
        "bucket_s": width,
        "over_time": A.over_time(probes, rs, width),
        "failures": A.failure_counts(probes),
        "restart": restart,
    }


def markdown(s: dict, files: dict[str, str]) -> str:
    """The report.md section of the watch."""
    avail = s["availability_pct"]
    lines = [
        f"Probed {s['base_url']} every {s['interval_s']:g} s for {s['duration_s']:g} s: GET /health, GET /ready, "
        "POST /api/evaluate (a fixed harmless text, rules); a round is up when all three answer 200.",
        "",
        f"- **availability: {'—' if avail is None else f'{avail:.2f} %'}** ({s['rounds_up']}/{s['rounds']} rounds up), "
        f"{len(s['incidents'])} incident(s), {s['downtime_s']:g} s down"
        + (f"; rounds that overran their interval stand for the slots they covered: {s['slots']} slots of "
           f"{s['interval_s']:g} s" if s["slots"] != s["rounds"] else ""),
    ]
    r = s.get("restart")
    if r:
        lines.append(
            f"- injected restart ({r['how']}) at +{r['issued_s']:.1f} s; back (GET /ready 200, polled every "
            f"{r['poll_s']:g} s) at +{r['back_s']:.1f} s: outage {r['outage_s']:.1f} s measured independently"
            if r.get("back_s") is not None else f"- injected restart ({r['how']}) at +{r['issued_s']:.1f} s: "
            f"never back ({r.get('error', '')})"
        )
    lines += ["", "| probe | n | ok | p50 | p95 | p99 | max |", "|---|---|---|---|---|---|---|"]
    for which in PROBES:
        v = s["latency"][which]
        lines.append(f"| {which} | {v['n']} | {v['ok']} | {_ms(v['p50_s'])} | {_ms(v['p95_s'])} | "
                     f"{_ms(v['p99_s'])} | {_ms(v['max_s'])} |")
    lines += ["", "**Incidents**", ""]
    if s["incidents"]:
        lines += ["| start (UTC) | +s | end | duration | rounds | what failed |", "|---|---|---|---|---|---|"]
        for i in s["incidents"]:
            what = ", ".join(f"{k} ×{n}" for k, n in sorted(i["failed"].items(), key=lambda kv: -kv[1]))
            end = f"+{i['end_s']:.1f} s" + (" (still down at the end)" if i["ongoing"] else "")
            lines.append(f"| {iso(i['start'])} | +{i['start_s']:.1f} s | {end} | {i['duration_s']:.1f} s | "
                         f"{i['rounds']} | {what} |")
    else:
        lines.append("none")
    lines += ["", f"**Over time** (buckets of {s['bucket_s']:g} s; p95 of the probes that answered)", "",
              "| from | to | rounds | up | " + " | ".join(f"{w} p95" for w in PROBES) + " |",
              "|---|---|---|---|" + "---|" * len(PROBES)]
    for b in s["over_time"]:
        lines.append(f"| +{b['start_s']:g} s | +{b['end_s']:g} s | {b['rounds']} | {b['up_pct']:.0f} % | "
                     + " | ".join(_ms(b[f"{w}_p95_s"]) for w in PROBES) + " |")
    if files:
        lines += ["", "Files: " + ", ".join(f"[{name}]({path})" for name, path in files.items())]
    return "\n".join(lines) + "\n"
