"""What the replicas session observes, and how it is judged: pure functions, tested on their own."""

from __future__ import annotations

from dataclasses import dataclass, field

CANCEL_BOUND_S = 2.0  # a cancel asked on one replica reaches the replica running the job within this


@dataclass
class Consistency:
    """A job started on one replica (the owner), as another replica (elsewhere) answers for it."""

    job_id: str
    run_id: str
    seen_elsewhere: dict | None  # GET /api/train/{id} on the other replica, while it runs
    busy_elsewhere: int  # POST /api/train on the other replica meanwhile: its status
    cancel_status: int  # POST /api/train/{id}/cancel on the other replica
    owner_saw_cancel_s: float | None  # from that cancel until the owner's job left queued/running
    final_owner: str | None
    final_elsewhere: str | None
    runs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # replica -> [(run_id, state)]


def consistency_problems(c: Consistency) -> list[str]:
    """What a fleet that acts as one deployment would not show; [] when it holds."""
    problems = []
    seen = c.seen_elsewhere or {}
    if seen.get("job_id") != c.job_id or seen.get("run_id") != c.run_id:
        problems.append(f"the other replica does not answer for job {c.job_id}: {str(c.seen_elsewhere)[:120]}")
    if c.busy_elsewhere != 409:
        problems.append(f"a second job on the other replica while {c.job_id} runs -> {c.busy_elsewhere}, not 409")
    if c.cancel_status not in (200, 202):
        problems.append(f"cancel on the other replica -> {c.cancel_status}")
    if c.owner_saw_cancel_s is None or c.owner_saw_cancel_s > CANCEL_BOUND_S:
        saw = "never" if c.owner_saw_cancel_s is None else f"after {c.owner_saw_cancel_s:.1f} s"
        problems.append(f"the owner saw the cancel {saw} (bound {CANCEL_BOUND_S:.0f} s)")
    if (c.final_owner, c.final_elsewhere) != ("cancelled", "cancelled"):
        problems.append(f"job ended {c.final_owner!r} on the owner, {c.final_elsewhere!r} on the other, not cancelled")
    lists = list(c.runs.values())
    if any(other != lists[0] for other in lists[1:]):
        problems.append("the replicas list different runs: " + "; ".join(
            f"{name}: {', '.join(f'{r} {s}' for r, s in runs)}" for name, runs in c.runs.items()))
    if lists and (c.run_id, "cancelled") not in lists[0]:
        problems.append(f"run {c.run_id} is not listed as cancelled")
    return problems


@dataclass
class Kill:
    """SIGKILL of the replica running a job, as the survivor and the balancer answered after it."""

    final_state: str | None  # the job's state on the survivor when the wait ended
    seconds: float | None  # from the kill until that state was final
    before: dict[str, str]  # the runs that had ended before the job: run_id -> state
    after: dict[str, str]  # the survivor's runs at the end
    failures: list[float]  # when each request through the balancer that failed was sent, s after the kill
    interval: float  # between those requests


def lost_runs(k: Kill) -> list[str]:
    """The runs that ended before the kill and are now missing or changed."""
    return [f"{r} {s} -> {k.after.get(r, 'missing')}" for r, s in k.before.items() if k.after.get(r) != s]


def outage_seconds(k: Kill) -> float:
    """How long requests through the balancer failed: from the first failure to the last, plus one
    interval; 0 when none did."""
    return 0.0 if not k.failures else max(k.failures) - min(k.failures) + k.interval


@dataclass
class Answer:
    """One request sent while the database was down: where, what, and how it was answered."""

    via: str  # a replica (r1, r2) or the balancer (edge)
    request: str  # "GET /api/runs"
    status: int | None  # None: no answer within the client's timeout, or the connection failed
    json_error: bool  # the body is a JSON object with an "error"
    seconds: float


@dataclass
class Outage:
    """Postgres stopped for a while under the fleet, then started again."""

    answers: list[Answer]
    recovered_s: float | None  # from the restart until every replica was ready and listed the runs again
    before: dict[str, str]  # the runs before the outage: run_id -> state
    after: dict[str, dict[str, str]]  # each replica's runs once recovered


def outage_problems(o: Outage, hang_s: float) -> list[str]:
    """What an outage must not cause: a 5xx other than a JSON 503, an answer slower than `hang_s`, a
    /ready that still says ready, runs lost or replicas that never recover; [] when it held."""
    problems = []
    bad = [a for a in o.answers if a.status is None or a.seconds > hang_s
           or (a.status >= 500 and not (a.status == 503 and a.json_error))]
    if bad:
        problems.append(f"{len(bad)} of {len(o.answers)} requests during the outage failed badly: " + "; ".join(
            f"{a.via} {a.request} -> {a.status or 'no answer'} ({'JSON' if a.json_error else 'not JSON'}) "
            f"after {a.seconds:.1f} s" for a in bad[:4]))
    ready = [a for a in o.answers if a.request.endswith("/ready") and a.via != "edge"]
    if not ready or any(a.status != 503 for a in ready):
        problems.append("/ready did not answer 503 on every replica while the database was down: "
                        + ", ".join(f"{a.via} {a.status}" for a in ready[:6]))
    if o.recovered_s is None:
        problems.append("the fleet did not recover after the database returned")
    for replica, runs in o.after.items():
        lost = [f"{r} {s} -> {runs.get(r, 'missing')}" for r, s in o.before.items() if runs.get(r) != s]
        if lost:
            problems.append(f"{replica} lost or changed runs: {', '.join(lost)}")
    return problems
