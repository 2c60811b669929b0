"""Bad input against every JSON route and the Gradio API of the target; concurrent training starts;
script/HTML comes back escaped in the UI. Runs on every target (container, process, url)."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from validation import api
from validation.resilience import battery

pytestmark = pytest.mark.resilience


def test_bad_input_battery(gate, http, target, say):
    cases = battery.json_cases() + battery.gradio_cases()
    outcomes, down = battery.run_cases(http, cases)
    s = battery.summary(outcomes)
    say(f"bad-input battery: {s['tried']} inputs on {len(s['routes'])} routes -> {s['verdicts']}")
    gate.recorder.note(
        f"bad-input battery: {s['tried']} inputs, {len(s['routes'])} routes, verdicts {s['verdicts']}, "
        f"HTTP statuses {s['statuses']}"
    )
    battery.bad_inputs(gate, outcomes, down)


def test_concurrent_training_starts(gate, http, target, require_ready):
    n = 6
    barrier = threading.Barrier(n)
    answers: list[httpx.Response | Exception] = [None] * n  # type: ignore[list-item]

    def start(i: int) -> None:
        with api.Client(base_url=target.base_url, auth=http.auth, timeout=60) as c:
            barrier.wait()
            try:
                answers[i] = c.post("/api/train", json={"preset": "smoke", "seed": i})
            except httpx.HTTPError as exc:
                answers[i] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    won = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 202]
    busy = [
        a
        for a in answers
        if isinstance(a, httpx.Response)
        and a.status_code == 409
        and (a.json() or {}).get("error") == "busy"
        and a.json().get("field")
    ]
    others = [
        a if isinstance(a, Exception) else f"{a.status_code} {a.text[:80]}" for a in answers if a not in won and a not in busy
    ]
    # While it trains, loading a model is refused too.
    load = http.post("/api/models/load", json={"model": "tiny"}, timeout=60) if won else None
    job_id = won[0].json()["job_id"] if won else None
    if job_id:
        http.post(f"/api/train/{job_id}/cancel", timeout=30)
        api.poll_job(http, job_id, timeout=120)
    gate.measure(
        "resilience.concurrent_train_winners",
        len(won) if not others else f"{len(won)} (+{len(others)} other answers: {others[:2]})",
        detail=f"{n} simultaneous POST /api/train: {len(won)} x 202, {len(busy)} x 409 busy naming the field"
        + (f"; load during training -> {load.status_code} {load.json().get('error')}" if load is not None else ""),
        soft=True,
    )
    if load is not None and load.status_code != 409:
        gate.fail(
            "resilience.concurrent_train_winners",
            len(won),
            f"POST /api/models/load during training answered {load.status_code}, not 409",
        )
    gate.raise_pending()


def _gradio_call(http: httpx.Client, api: str, data: list) -> tuple[str, object]:
    r = http.post(f"/gradio_api/call/{api}", json={"data": data}, timeout=60)
    r.raise_for_status()
    event, payload = battery._sse_result(http, f"/gradio_api/call/{api}", r.json()["event_id"], 120)
    try:
        return event, json.loads(payload)
    except ValueError:
        return event, payload


def _html_outputs(http: httpx.Client, api: str) -> list[bool]:
    """For each output of `api`, whether the UI renders it as HTML (a gr.HTML component)."""
    cfg = http.get("/config", timeout=30).json()
    comps = {c["id"]: c for c in cfg["components"]}
    for dep in cfg["dependencies"]:
        if dep.get("api_name") == api:
            return [comps.get(o, {}).get("type") == "html" for o in dep["outputs"]]
    return []


def test_html_comes_back_escaped(gate, http, target, require_ready):
    """Script/HTML in text fields: every HTML output and every error message shows it escaped."""
    import tomllib  # noqa: F401 - python 3.11

    from validation.checks import REPO

    exemplar = json.loads((REPO / "app" / "data" / "constitution.json").read_text())["principles"][0]["exemplars"][0]
    words = exemplar.split(" ")
    tagged = " ".join(
        words[:3] + ["<script>alert('cai-xss')</script>"] + words[3:6] + ["<img src=x onerror=alert(1)>"] + words[6:]
    )
    raw_marks = ("<script", "<img", "onerror=alert(1)>")
    unescaped, reflected = [], []
    html_flags = _html_outputs(http, "evaluate")
    for mode in ("rules", "both"):
        event, out = _gradio_call(http, "evaluate", [tagged, mode])
        if event != "complete":
            unescaped.append(f"evaluate({mode}) did not complete: {event} {str(out)[:80]}")
            continue
        for i, value in enumerate(out):
            if not isinstance(value, str) or not (html_flags[i] if i < len(html_flags) else True):
                continue
            if any(m in value for m in raw_marks):
                unescaped.append(f"evaluate({mode}) output {i} (HTML): {value[:100]}")
            if "&lt;script&gt;" in value or "&lt;img" in value:
                reflected.append(f"evaluate({mode}) output {i}")
    for endpoint, data in (("load_model", [f"{battery.HTML_PAYLOAD}"]), ("generate", [battery.HTML_PAYLOAD + "\u0000", 0.7, 8])):
        event, out = _gradio_call(http, endpoint, data)
        message = out.get("error") if isinstance(out, dict) else str(out)
        if event == "error" and message:
            if any(m in message for m in raw_marks):
                unescaped.append(f"{endpoint} error message (a toast, rendered as HTML): {message[:100]}")
            elif "&lt;" in message:
                reflected.append(f"{endpoint} error message")
    gate.measure(
        "resilience.html_unescaped",
        unescaped,
        detail=f"payload came back escaped in: {', '.join(reflected) or 'nowhere (not reflected)'}",
    )
