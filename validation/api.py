"""The app's HTTP contract as the gate sees it (docs/http-api.md): what several sessions need, in one
place. validation/perf/locustfile.py keeps its own copy of FINAL_STATES: locust loads it by path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
