"""What the probes say: rounds, availability, incidents, latency percentiles per probe and over time.

Pure functions over a list of `Probe`s (no I/O): unit-tested in tests/test_gate_watch.py.

- A round is *up* when every probe of it is ok. It stands for the grid slots it covered (one, unless it
  overran its interval: probes.py). Availability = slots of up rounds / slots.
- An incident is a maximal run of consecutive down rounds: it starts when its first down round
  started and ends when the next up round started (or, when the watch ended down, one interval after
  its last round: `ongoing`). Its duration is therefore measured to within one interval.
- Percentiles are nearest-rank (validation/perf/loadrun.exact_percentile) over the probes that answered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from validation.perf.loadrun import exact_percentile
from validation.watch.probes import PROBES, Probe, slots_planned  # noqa: F401 - slots_planned re-exported


@dataclass
class Round:
    n: int
    t_s: float  # start, seconds since the watch started
    t: float  # start, wall clock
    up: bool
    failed: list[str]  # "ready 503", "health no answer", ...
    slots: int = 1  # grid slots this round stands for (> 1 when it overran its interval)


@dataclass
class Incident:
    start_s: float
    end_s: float
    start: float  # wall clock
    end: float
    rounds: int
    failed: dict[str, int] = field(default_factory=dict)  # what failed -> how many probes
    ongoing: bool = False

    @property
    def duration_s(self) -> float:
        return round(self.end_s - self.start_s, 3)

    def to_dict(self) -> dict:
        return {**asdict(self), "duration_s": self.duration_s}


def failure_label(p: Probe) -> str:
    """'ready 503', 'evaluate 200 (no verdict)', 'health no answer' (the exception's name is in the CSV)."""
    if p.status is not None:
        return f"{p.which} {p.status}" + (" (no verdict)" if p.status == 200 else "")
    return f"{p.which} {'timeout' if 'Timeout' in p.error else 'no answer'}"


def rounds(probes: list[Probe], total_slots: int | None = None) -> list[Round]:
    """The probes grouped by round; the last round stands for the slots left up to `total_slots`."""
    by_round: dict[int, list[Probe]] = {}
    for p in probes:
        by_round.setdefault(p.round, []).append(p)
    out = []
    ns = sorted(by_round)
    for i, n in enumerate(ns):
        ps = by_round[n]
        failed = [failure_label(p) for p in ps if not p.ok]
        slots = ns[i + 1] - n if i + 1 < len(ns) else max(1, (total_slots or 0) - n)
        out.append(Round(n, ps[0].t_s, ps[0].t, not failed and len(ps) == len(PROBES), failed, slots))
    return out


def availability(rs: list[Round]) -> float | None:
    """Per cent of the slots whose round was up; None when there was no round."""
    total = sum(r.slots for r in rs)
    return None if not total else round(100.0 * sum(r.slots for r in rs if r.up) / total, 3)


def incidents(rs: list[Round], interval: float) -> list[Incident]:
    out: list[Incident] = []
    cur: Incident | None = None
    for r in rs:
        if not r.up:
            if cur is None:
                cur = Incident(r.t_s, r.t_s, r.t, r.t, 0)
            cur.rounds += 1
            for f in r.failed:
                cur.failed[f] = cur.failed.get(f, 0) + 1
            continue
        if cur is not None:
            cur.end_s, cur.end = r.t_s, r.t
            out.append(cur)
            cur = None
    if cur is not None:
        last = rs[-1]
        cur.end_s, cur.end, cur.ongoing = round(last.t_s + interval, 3), last.t + interval, True
        out.append(cur)
    return out


def latency(probes: list[Probe]) -> dict[str, dict]:
    """Per probe: n, answered, ok, p50/p95/p99/max of the answered probes' latency (s)."""
    out = {}
    for which in PROBES:
        ps = [p for p in probes if p.which == which]
        answered = [p.latency_s for p in ps if p.status is not None]
        out[which] = {
            "n": len(ps),
            "answered": len(answered),
            "ok": sum(p.ok for p in ps),
            "p50_s": exact_percentile(answered, 0.50),
            "p95_s": exact_percentile(answered, 0.95),
            "p99_s": exact_percentile(answered, 0.99),
            "max_s": max(answered) if answered else None,
        }
    return out


def slowest_p95(lat: dict[str, dict]) -> tuple[str | None, float | None]:
    """(probe, p95) of the probe with the highest p95; (None, None) when nothing answered."""
    known = [(w, v["p95_s"]) for w, v in lat.items() if v["p95_s"] is not None]
    if len(known) < len(lat):
        return next(w for w, v in lat.items() if v["p95_s"] is None), None
    return max(known, key=lambda kv: kv[1])


def bucket_seconds(duration: float, interval: float, buckets: int = 10) -> float:
    """Width of the over-time buckets: about `buckets` of them, a whole number of intervals, >= 60 s
    for watches longer than 10 minutes."""
    width = max(interval, duration / buckets)
    if duration > 600:
        width = max(width, 60.0)
    return round(interval * max(1, round(width / interval)), 3)


def over_time(probes: list[Probe], rs: list[Round], width: float) -> list[dict]:
    """Per bucket [start, start + width): rounds, up %, p95 latency per probe (answered probes)."""
    out = []
    if not rs:
        return out
    n_buckets = int(rs[-1].t_s // width) + 1
    for b in range(n_buckets):
        lo, hi = b * width, (b + 1) * width
        brs = [r for r in rs if lo <= r.t_s < hi]
        if not brs:
            continue
        row = {"start_s": round(lo, 3), "end_s": round(hi, 3), "rounds": len(brs), "up_pct": availability(brs)}
        ns = {r.n for r in brs}  # a probe belongs to its round's bucket
        for which in PROBES:
            vals = [p.latency_s for p in probes if p.which == which and p.status is not None and p.round in ns]
            row[f"{which}_p95_s"] = exact_percentile(vals, 0.95)
        out.append(row)
    return out


def failure_counts(probes: list[Probe]) -> dict[str, int]:
    return dict(Counter(failure_label(p) for p in probes if not p.ok))


def window_rounds(rs: list[Round], start_s: float, end_s: float) -> tuple[list[Round], list[Round]]:
    """(rounds that started inside [start_s, end_s], the others)."""
    inside = [r for r in rs if start_s <= r.t_s <= end_s]
    return inside, [r for r in rs if not (start_s <= r.t_s <= end_s)]
