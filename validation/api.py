"""The app's HTTP contract as the gate sees it (docs/http-api.md): what several sessions need, in one
place, and the gate's HTTP client, where the time spent on the app's answers is counted.
validation/perf/locustfile.py keeps its own copy of FINAL_STATES: locust loads it by path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from validation.gate import CLOCK


class Client(httpx.Client):
    """The gate's HTTP client: an httpx.Client whose requests count as the app's time in the session's
    clock (validation.gate.CLOCK), not the gate's own. Every request the gate sends to an app goes through one."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        with CLOCK.spent("app"):
            return super().send(request, **kwargs)


FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})  # a training job's states that end it


class JobPollError(Exception):
    """GET /api/train/{id} did not answer 200."""

    def __init__(self, job_id: str, status: int, text: str):
        super().__init__(f"GET /api/train/{job_id} -> {status} {text[:200]}")
        self.status = status


def poll_job(
    http: httpx.Client,
    job_id: str,
    *,
    timeout: float,
    interval: float = 0.3,
    until: Callable[[dict], bool] | None = None,
) -> dict:
    """Poll a training job until it ends, `until(job)` holds, or `timeout` seconds pass; the last state
    seen. Raises JobPollError on a non-200 answer, or when no answer came at all."""

    def done(r: httpx.Response) -> bool | None:
        if r.status_code != 200:
            raise JobPollError(job_id, r.status_code, r.text)
        job = r.json()
        return True if job.get("state") in FINAL_STATES or (until and until(job)) else None

    state = poll_http(http, f"/api/train/{job_id}", done, timeout=timeout, interval=interval)
    if state["response"] is None:
        raise JobPollError(job_id, 0, state["last"])
    return state["response"].json()


def start_training(client: httpx.Client, preset: str, *, seed: int = 7, until: Callable[[dict], bool] | None = None,
                   timeout: float = 900) -> dict:
    """POST /api/train with `preset`, then poll until `until(job)` (default: a final state); the job as
    last seen. AssertionError when the start is not accepted (202)."""
    r = client.post("/api/train", json={"preset": preset, "seed": seed})
    assert r.status_code == 202, f"POST /api/train -> {r.status_code} {r.text[:200]}"
    return poll_job(client, r.json()["job_id"], timeout=timeout, until=until)


def mid_training(job: dict) -> bool:
    """`until` for start_training: the job is past its second optimizer step."""
    return job["state"] == "running" and job["step"] >= 2


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def poll_http(http: httpx.Client, url: str, done: Callable[[httpx.Response], bool | None], *, timeout: float,
              interval: float = 0.1, dead: Callable[[], str | None] = lambda: None) -> dict:
    """GET `url` every `interval` s until `done(answer)` is True (ok) or False (waiting is pointless),
    `timeout` s pass, or `dead()` says why the app is gone; {ok, seconds, last, gone, response}. The waits
    between polls are the app's time in the session's clock, like the requests."""
    t0 = time.monotonic()
    last, r = "no answer", None
    while True:
        gone = dead()
        if gone:
            return {"ok": False, "seconds": time.monotonic() - t0, "last": last, "gone": gone, "response": r}
        try:
            r = http.get(url, timeout=5)
            last = f"{r.status_code} {' '.join(r.text.split())[:160]}"
            verdict = done(r)
            if verdict is not None:
                return {"ok": verdict, "seconds": time.monotonic() - t0, "last": last, "gone": None, "response": r}
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() - t0 >= timeout:
            return {"ok": False, "seconds": time.monotonic() - t0, "last": last, "gone": None, "response": r}
        CLOCK.sleep(interval)


def wait_ready(http: httpx.Client, timeout: float, interval: float = 0.1, dead=lambda: None) -> dict:
    """Poll /ready until 200, `timeout` s, or `dead()` says why the app is gone;
    return {ok, seconds, last, body} (no verdict: see checks.ready()). Stops early when /ready says the
    load failed."""

    def done(r: httpx.Response) -> bool | None:
        if r.status_code == 200:
            return True
        body = _json(r)
        return False if isinstance(body, dict) and body.get("status") == "failed" else None  # failed: nothing to wait for

    state = poll_http(http, "/ready", done, timeout=timeout, interval=interval, dead=dead)
    if state["gone"]:
        state["last"] = f"{state['last']}; {state['gone']}"
    if state["ok"]:
        state["body"] = _json(state["response"])
    return state
