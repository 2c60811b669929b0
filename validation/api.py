"""The app's HTTP contract as the gate sees it (docs/http-api.md): what several sessions need, in one
place. validation/perf/locustfile.py keeps its own copy of FINAL_STATES: locust loads it by path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from validation.gate import CLOCK

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})  # a training job's states that end it


class JobPollError(Exception):
    """GET /api/train/{id} did not answer 200."""

    def __init__(self, job_id: str, status: int, text: str):
        super().__init__(f"GET /api/train/{job_id} -> {status} {text[:200]}")
        self.status = status


def poll_job(
    get: Callable[..., Any],
    job_id: str,
    *,
    timeout: float,
    interval: float = 0.3,
    until: Callable[[dict], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll a training job (`get` is an HTTP client's get: httpx or requests) until it ends, `until(job)`
    holds, or `timeout` seconds pass; the last state seen. Raises JobPollError on a non-200 answer."""
    t0 = time.monotonic()
    while True:
        r = get(f"/api/train/{job_id}", timeout=10)
        if r.status_code != 200:
            raise JobPollError(job_id, r.status_code, r.text)
        job = r.json()
        if job.get("state") in FINAL_STATES or (until and until(job)) or time.monotonic() - t0 > timeout:
            return job
        sleep(interval)


def start_training(client: httpx.Client, preset: str, *, seed: int = 7, until: Callable[[dict], bool] | None = None,
                   timeout: float = 900) -> dict:
    """POST /api/train with `preset`, then poll until `until(job)` (default: a final state); the job as
    last seen. AssertionError when the start is not accepted (202)."""
    r = client.post("/api/train", json={"preset": preset, "seed": seed})
    assert r.status_code == 202, f"POST /api/train -> {r.status_code} {r.text[:200]}"
    return poll_job(client.get, r.json()["job_id"], timeout=timeout, until=until)


def mid_training(job: dict) -> bool:
    """`until` for start_training: the job is past its second optimizer step."""
    return job["state"] == "running" and job["step"] >= 2


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def wait_ready(http: httpx.Client, timeout: float, interval: float = 0.1, dead=lambda: None) -> dict:
    """Poll /ready until 200, `timeout` s, or `dead()` says why the app is gone;
    return {ok, seconds, last} (no verdict: see checks.ready()). Stops early when /ready says the
    load failed."""
    t0 = time.monotonic()
    last = "no answer"
    while True:
        gone = dead()
        if gone:
            return {"ok": False, "seconds": time.monotonic() - t0, "last": f"{last}; {gone}"}
        try:
            r = http.get("/ready", timeout=5)
            last = f"{r.status_code} {' '.join(r.text.split())[:160]}"
            if r.status_code == 200:
                return {"ok": True, "seconds": time.monotonic() - t0, "last": last, "body": _json(r)}
            body = _json(r)
            if isinstance(body, dict) and body.get("status") == "failed":  # the load failed: nothing to wait for
                return {"ok": False, "seconds": time.monotonic() - t0, "last": last}
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - t0 >= timeout:
            return {"ok": False, "seconds": time.monotonic() - t0, "last": last}
        CLOCK.sleep(interval)
