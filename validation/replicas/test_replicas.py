"""Two replicas act as one deployment: `replicas.consistent`, `replicas.db_outage`, then
`replicas.kill_one` and `replicas.kill_outage` (last: it kills a replica of the session's fleet)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from validation import api
from validation.replicas.checks import (
    Answer,
    Consistency,
    Kill,
    Outage,
    consistency_problems,
    lost_runs,
    outage_problems,
    outage_seconds,
)

pytestmark = pytest.mark.replicas

KILL_SLACK_S = 10  # the survivor is given the criterion's bound and this to end the killed replica's job
PROBE_INTERVAL_S = 0.2
DB_OUTAGE_S = 10  # how long Postgres is stopped
HANG_S = 8  # an answer slower than this during the outage counts as a hang (connecting gives up after 5 s)
RECOVERY_WAIT_S = 60
# What users send while the database is down: readiness, the runs, the fleet's model, a generation.
OUTAGE_REQUESTS = (("GET", "/ready", None), ("GET", "/api/runs", None), ("GET", "/api/models", None),
                   ("POST", "/api/generate", {"prompt": "Say hello.", "max_new_tokens": 4, "compare": False}))


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


def _final_state(c: httpx.Client, job_id: str, timeout: float) -> str:
    """The job's state once it ends, as `c`'s replica answers; what it answered when it cannot."""
    try:
        return api.poll_job(c, job_id, timeout=timeout)["state"]
    except api.JobPollError as exc:
        return str(exc)


def test_a_job_is_seen_polled_and_cancelled_on_another_replica(gate, fleet, say):
    owner_app, other_app = fleet.replicas
    with api.Client(base_url=owner_app.base_url, timeout=30) as owner, \
            api.Client(base_url=other_app.base_url, timeout=30) as other:
        job = api.start_training(owner, "smoke", until=lambda j: j["state"] == "running")
        seen = other.get(f"/api/train/{job['job_id']}")
        busy = other.post("/api/train", json={"preset": "smoke"})
        cancel = other.post(f"/api/train/{job['job_id']}/cancel")
        saw = _until_left_running(owner, job["job_id"], timeout=10)
        final_owner = _final_state(owner, job["job_id"], timeout=120)
        final_other = _final_state(other, job["job_id"], timeout=30)
        runs = {"r1": _runs(owner), "r2": _runs(other)}
    observed = Consistency(job["job_id"], job["run_id"], seen.json() if seen.status_code == 200 else None,
                           busy.status_code, cancel.status_code, saw, final_owner, final_other, runs)
    problems = consistency_problems(observed)
    saw = saw if saw is None else round(saw, 2)
    say(f"job {job['job_id']} on r1, cancelled from r2: the owner saw it after {saw} s; {len(runs['r1'])} runs each")
    gate.measure("replicas.consistent", not problems, detail="; ".join(problems) or
                 f"job {job['job_id']} started on r1 answered, refused a second job (409) and cancelled on r2; "
                 f"r1 saw the cancel after {saw} s; both list the same {len(runs['r1'])} runs")


def _ask(c: httpx.Client, via: str, method: str, path: str, body: dict | None) -> Answer:
    t0 = time.monotonic()
    try:
        r = c.request(method, path, json=body)
    except httpx.HTTPError:
        return Answer(via, f"{method} {path}", None, False, time.monotonic() - t0)
    try:
        json_error = isinstance(r.json(), dict) and "error" in r.json()
    except ValueError:
        json_error = False
    return Answer(via, f"{method} {path}", r.status_code, json_error, time.monotonic() - t0)


def _recovered(clients: dict[str, httpx.Client], timeout: float) -> float | None:
    """Seconds until every replica is ready and lists the runs again."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if all(c.get("/ready").status_code == 200 and c.get("/api/runs").status_code == 200
                   for c in clients.values()):
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return None


def test_a_database_outage_answers_json_503s_and_the_fleet_recovers(gate, fleet, say):
    clients = {f"r{i}": httpx.Client(base_url=r.base_url, timeout=HANG_S + 2) for i, r in enumerate(fleet.replicas, 1)}
    clients["edge"] = httpx.Client(base_url=fleet.edge.url, timeout=HANG_S + 2)
    try:
        before = dict(_runs(clients["r1"]))
        fleet.database.stop()
        say(f"Postgres stopped for {DB_OUTAGE_S} s under the fleet")
        answers, t0 = [], time.monotonic()
        try:
            while time.monotonic() - t0 < DB_OUTAGE_S:
                answers += [_ask(c, via, *request) for via, c in clients.items() for request in OUTAGE_REQUESTS]
        finally:
            fleet.database.start()
        replicas = {k: c for k, c in clients.items() if k != "edge"}
        recovered = _recovered(replicas, RECOVERY_WAIT_S)
        after = {k: dict(_runs(c)) for k, c in replicas.items()} if recovered is not None else {}
    finally:
        for c in clients.values():
            c.close()
    problems = outage_problems(Outage(answers, recovered, before, after), HANG_S)
    statuses = sorted({f"{a.request} {a.status}" for a in answers})
    after_s = "never" if recovered is None else f"after {recovered:.2f} s"
    say(f"during the outage: {len(answers)} requests, {', '.join(statuses)}; recovered {after_s}")
    if problems:
        gate.fail("replicas.db_outage", recovered and round(recovered, 1), "; ".join(problems))
    slowest = max(a.seconds for a in answers)
    gate.measure("replicas.db_outage", recovered,
                 detail=f"Postgres stopped {DB_OUTAGE_S} s: {len(answers)} requests on both replicas and the balancer "
                        f"answered {', '.join(statuses)} (slowest {slowest:.2f} s); every replica ready and "
                        f"listing the same {len(before)} runs {recovered:.1f} s after it returned")


class _Probe:
    """Requests through the balancer every PROBE_INTERVAL_S, as users would send them: the UI page
    (sticky by its cookie) and /api/runs (round-robin); when those that failed were sent."""

    def __init__(self, fleet):
        self.client = httpx.Client(base_url=fleet.edge.url, timeout=5)
        self.t0, self.failures, self.sent = time.monotonic(), [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL_S):
            for path in ("/", "/api/runs"):
                self.sent += 1
                sent = time.monotonic() - self.t0  # a failure counts when it was asked, not when it gave up
                try:
                    ok = self.client.get(path).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    self.failures.append(sent)

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
        victim.kill()
        say(f"SIGKILL of {owner} running {job['job_id']} at step {job['step']}")
        with api.Client(base_url=survivor.base_url, timeout=30) as c:
            final = api.poll_job(c, job["job_id"], timeout=float(gate.threshold("replicas.kill_one")) + KILL_SLACK_S,
                                 until=lambda j: j["state"] == "interrupted")
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
