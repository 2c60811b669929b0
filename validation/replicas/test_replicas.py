"""Two replicas act as one deployment: `replicas.consistent`, then `replicas.kill_one` and
`replicas.kill_outage` (last: it kills a replica of the session's fleet)."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from validation import api
from validation.replicas.checks import Consistency, Kill, consistency_problems, lost_runs, outage_seconds

pytestmark = pytest.mark.replicas

KILL_WAIT_S = 180  # how long the survivor is given to end the killed replica's job
PROBE_INTERVAL_S = 0.2


def _runs(c: httpx.Client) -> list[tuple[str, str]]:
    return [(r["run_id"], r["state"]) for r in c.get("/api/runs").json()["runs"]]


def _until_left_running(c: httpx.Client, job_id: str, timeout: float) -> float | None:
    """Seconds until the job, as `c`'s replica has it, is no longer queued or running."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if c.get(f"/api/train/{job_id}").json()["state"] not in {"queued", "running"}:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def test_a_job_is_seen_polled_and_cancelled_on_another_replica(gate, fleet, say):
    owner_app, other_app = fleet.replicas
    with api.Client(base_url=owner_app.base_url, timeout=30) as owner, \
            api.Client(base_url=other_app.base_url, timeout=30) as other:
        job = api.start_training(owner, "smoke", until=lambda j: j["state"] == "running")
        seen = other.get(f"/api/train/{job['job_id']}")
        busy = other.post("/api/train", json={"preset": "smoke"})
        cancel = other.post(f"/api/train/{job['job_id']}/cancel")
        saw = _until_left_running(owner, job["job_id"], timeout=10)
        final_owner = api.poll_job(owner, job["job_id"], timeout=120)["state"]
        final_other = api.poll_job(other, job["job_id"], timeout=30)["state"]
        runs = {"r1": _runs(owner), "r2": _runs(other)}
    observed = Consistency(job["job_id"], job["run_id"], seen.json() if seen.status_code == 200 else None,
                           busy.status_code, cancel.status_code, saw, final_owner, final_other, runs)
    problems = consistency_problems(observed)
    saw = saw if saw is None else round(saw, 2)
    say(f"job {job['job_id']} on r1, cancelled from r2: the owner saw it after {saw} s; {len(runs['r1'])} runs each")
    gate.measure("replicas.consistent", not problems, detail="; ".join(problems) or
                 f"job {job['job_id']} started on r1 answered, refused a second job (409) and cancelled on r2; "
                 f"r1 saw the cancel after {saw} s; both list the same {len(runs['r1'])} runs")


class _Probe:
    """Requests through the balancer every PROBE_INTERVAL_S, as users would send them: the UI page
    (sticky by its cookie) and /api/runs (round-robin); the times of those that failed."""

    def __init__(self, fleet):
        self.client = httpx.Client(base_url=fleet.edge.url, timeout=5)
        self.t0, self.failures, self.sent = time.monotonic(), [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL_S):
            for path in ("/", "/api/runs"):
                self.sent += 1
                try:
                    ok = self.client.get(path).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    self.failures.append(time.monotonic() - self.t0)

    def __enter__(self) -> _Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def test_sigkill_of_the_replica_running_a_job_leaves_it_interrupted_and_the_fleet_serving(gate, fleet, say):
    with api.Client(base_url=fleet.edge.url, timeout=30) as edge:
        before = dict(_runs(edge))
        job = api.start_training(edge, "quick", until=api.mid_training)
        owner = edge.get(f"/api/runs/{job['run_id']}").json()["replica"]
    victim = fleet.replicas[int(owner.removeprefix("r")) - 1]
    survivor = next(r for r in fleet.replicas if r is not victim)
    with _Probe(fleet) as probe:
        probe.t0 = killed = time.monotonic()
        os.killpg(victim.pid, signal.SIGKILL)
        victim.popen.wait(30)
        say(f"SIGKILL of {owner} (pid {victim.pid}) running {job['job_id']} at step {job['step']}")
        with api.Client(base_url=survivor.base_url, timeout=30) as c:
            final = api.poll_job(c, job["job_id"], timeout=KILL_WAIT_S, until=lambda j: j["state"] == "interrupted")
            seconds = time.monotonic() - killed
            after = dict(_runs(c))
        time.sleep(2)  # the probe goes on a little after the job ended
    outcome = Kill(final["state"], seconds, before, after, probe.failures, PROBE_INTERVAL_S)
    lost = lost_runs(outcome)
    outage = outage_seconds(outcome)
    say(f"{job['job_id']} {final['state']} after {seconds:.1f} s; {len(probe.failures)} of {probe.sent} "
        f"requests through the balancer failed ({outage:.1f} s)")
    span = f", from {min(probe.failures):.1f} s to {max(probe.failures):.1f} s after the kill" if probe.failures else ""
    gate.measure("replicas.kill_outage", outage, soft=True,
                 detail=f"{len(probe.failures)} of {probe.sent} requests (UI page and /api/runs every "
                        f"{PROBE_INTERVAL_S} s) failed{span}")
    if final["state"] != "interrupted" or lost:
        gate.fail("replicas.kill_one", round(seconds, 1),
                  f"job {job['job_id']} is {final['state']!r} on the survivor after {seconds:.0f} s"
                  + (f"; earlier runs lost or changed: {', '.join(lost)}" if lost else ""))
    gate.measure("replicas.kill_one", seconds,
                 detail=f"{job['job_id']} (quick, step {job['step']}) interrupted on the survivor: "
                        f"{final.get('error')}; the {len(before)} earlier runs kept")
