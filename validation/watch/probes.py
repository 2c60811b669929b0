"""One probe round (GET /health, GET /ready, POST /api/evaluate of a fixed harmless text) and the loop
that runs rounds at a fixed interval for a bounded time.

    w = Watcher(lambda: target.base_url, interval=10, duration=300, auth=("u", "p"))
    probes = w.run(on_round=print)        # blocks; every probe recorded, also the failed ones

Rounds start on a fixed grid of slots (start + k * interval) and carry their slot's number k. A round
that overruns its slot (slow answers, timeouts) stands for every slot it covered: the next round starts
at once, on the next slot not yet begun, so `round` numbers then jump (analysis.rounds weighs each round
by the slots it covered). Each probe has its own timeout; a probe is ok when it answers 200 (the
evaluation: 200 with a boolean `flagged`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx

from validation import api
from validation.checks import HARMLESS_TEXT

PROBES = ("health", "ready", "evaluate")
EVALUATE_BODY = {"text": HARMLESS_TEXT, "mode": "rules"}


@dataclass
class Probe:
    round: int
    which: str  # health | ready | evaluate
    t: float  # wall clock (time.time()) when the request was sent
    t_s: float  # seconds since the watch started
    status: int | None  # HTTP status, None when no answer
    latency_s: float  # until the answer (or the error)
    ok: bool
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def slots_planned(duration: float, interval: float) -> int:
    """Grid slots in a watch of `duration` seconds: one round each when no round overruns."""
    return max(1, math.ceil(round(duration / interval, 6)))


def probe_once(client: httpx.Client, base_url: str, which: str, round_no: int, t_start: float) -> Probe:
    t = time.time()
    t0 = time.perf_counter()
    status, ok, error = None, False, ""
    try:
        if which == "evaluate":
            r = client.post(f"{base_url}/api/evaluate", json=EVALUATE_BODY)
        else:
            r = client.get(f"{base_url}/{which}")
        status = r.status_code
        ok = status == 200
        if ok and which == "evaluate":
            try:
                ok = isinstance(r.json().get("flagged"), bool)
            except ValueError:
                ok = False
            error = "" if ok else f"200 without a verdict: {r.text[:80]}"
        elif not ok:
            error = f"{status} {r.text[:80]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:160]
    return Probe(round_no, which, t, round(t - t_start, 3), status, round(time.perf_counter() - t0, 4), ok, error)


class Watcher:
    """Probe rounds at a fixed interval until `duration` seconds have passed (or stop() is called)."""

    def __init__(
        self,
        base_url: Callable[[], str],
        *,
        interval: float,
        duration: float,
        timeout: float = 10.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        if interval <= 0 or duration <= 0:
            raise ValueError(f"interval and duration must be > 0 (got {interval}, {duration})")
        self.base_url = base_url  # read every probe: a restarted container may come back on another port
        self.interval = interval
        self.duration = duration
        self.timeout = timeout
        self.auth = auth
        self.probes: list[Probe] = []
        self.started_at: float | None = None  # wall clock
        self.ended_at: float | None = None
        self._stop = threading.Event()

    @property
    def rounds_planned(self) -> int:
        return slots_planned(self.duration, self.interval)

    def stop(self) -> None:
        self._stop.set()

    def run(self, on_round: Callable[[int, list[Probe]], None] | None = None) -> list[Probe]:
        self.started_at = time.time()
        t0 = time.monotonic()
        # No keep-alive: each probe opens its own connection, as a fresh visitor (and an uptime
        # checker) would; a pooled connection would hide a listener that no longer accepts.
        limits = httpx.Limits(max_keepalive_connections=0)
        with api.Client(timeout=self.timeout, auth=self.auth, limits=limits) as client:
            k = 0  # the slot
            while not self._stop.is_set() and k < self.rounds_planned:
                url = self.base_url().rstrip("/")
                batch = [probe_once(client, url, which, k, self.started_at) for which in PROBES]
                self.probes.extend(batch)
                if on_round:
                    on_round(k, batch)
                k = max(k + 1, math.ceil((time.monotonic() - t0) / self.interval))
                wait = t0 + k * self.interval - time.monotonic()
                if wait > 0 and k < self.rounds_planned:
                    self._stop.wait(wait)
        self.ended_at = time.time()
        return self.probes
