"""The restart injected in the middle of a watch (--restart-at, container or process target), the outage
measured independently of the watch, and the check that the watch saw it right.

    r = Restarter(target, at_s=20, t0=watch_start_wall_clock, auth=auth).start()
    ...; r.join(); r.result()   # {"how", "issued_s", "back_s", "outage_s", ...} (seconds since t0)

"Back" is the first moment GET /ready and POST /api/evaluate both answer 200 again, polled every
`poll_s` seconds (much finer than the watch's interval) on the target's current URL (a restarted
container may come back on another host port).
"""

from __future__ import annotations

import threading
import time

import httpx

from validation import api
from validation.gate import Gate
from validation.watch.probes import EVALUATE_BODY

HOW = {"container": "docker restart", "process": "SIGTERM, then `python -m app` again on the same port"}
CID = "watch.restart_incident"


class Restarter(threading.Thread):
    def __init__(self, target, *, at_s: float, t0: float, auth=None, poll_s: float = 0.25, timeout: float = 180) -> None:  # noqa: ANN001
        super().__init__(name="watch-restart", daemon=True)
        self.target, self.at_s, self.t0, self.auth = target, at_s, t0, auth
        self.poll_s, self.timeout = poll_s, timeout
        self.issued: float | None = None
        self.restarted: float | None = None  # the restart call returned
        self.back: float | None = None
        self.error = ""

    def run(self) -> None:
        time.sleep(max(0.0, self.t0 + self.at_s - time.time()))
        self.issued = time.time()
        try:
            self.target.restart()
        except Exception as exc:  # noqa: BLE001 - reported in the result and by the check
            self.error = f"restart failed: {type(exc).__name__}: {exc}"
            return
        self.restarted = time.time()
        deadline = time.monotonic() + self.timeout
        with api.Client(timeout=5, auth=self.auth) as c:
            while time.monotonic() < deadline:
                url = self.target.base_url
                try:
                    if c.get(f"{url}/ready").status_code == 200 and \
                            c.post(f"{url}/api/evaluate", json=EVALUATE_BODY).status_code == 200:
                        self.back = time.time()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(self.poll_s)
        self.error = f"not ready again {self.timeout:.0f} s after the restart"

    def result(self) -> dict:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - self.t0, 3)

        return {
            "how": HOW.get(self.target.kind, self.target.kind),
            "at_s": self.at_s,
            "issued_s": rel(self.issued),
            "restart_call_s": None if self.restarted is None or self.issued is None else round(self.restarted - self.issued, 3),
            "back_s": rel(self.back),
            "outage_s": None if self.back is None or self.issued is None else round(self.back - self.issued, 3),
            "poll_s": self.poll_s,
            "error": self.error,
        }


def restart_incident(gate: Gate, summary: dict, interval: float, soft: bool = True) -> None:
    """The watch shows the injected restart as exactly one incident whose duration is the outage measured
    by the fine poller, to within one interval + 1 s, and availability below 100 %."""
    r = summary["restart"]
    if r.get("back_s") is None:
        gate.fail(CID, False, f"{r['how']}: {r.get('error') or 'the app did not come back'}")
    issued, back = r["issued_s"], r["back_s"]
    near = [i for i in summary["incidents"] if i["start_s"] <= back + interval and i["end_s"] >= issued]
    problems = []
    detail = f"{r['how']} at +{issued:.1f} s, ready again at +{back:.1f} s (outage {r['outage_s']:.1f} s)"
    if len(near) != 1:
        problems.append(f"{len(near)} incidents around the restart (want 1)")
    else:
        inc = near[0]
        diff = inc["duration_s"] - r["outage_s"]
        detail += f"; incident +{inc['start_s']:.1f} .. +{inc['end_s']:.1f} s ({inc['duration_s']:.1f} s, {diff:+.1f} s)"
        if abs(diff) > interval + 1.0:
            problems.append(f"incident duration off by {diff:+.1f} s (allowed ±{interval + 1.0:g} s)")
    avail = summary["availability_pct"]
    detail += f"; availability {avail} %"
    if avail is None or avail >= 100:
        problems.append("availability 100 %: the watch did not see the restart")
    gate.measure(CID, not problems, detail=detail + ("; " + "; ".join(problems) if problems else ""), soft=soft)
