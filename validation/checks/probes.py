"""Probes: health, start-up, readiness (and its truth), the UI's config, /metrics, memory, the log."""

from __future__ import annotations

import httpx

from validation.checks.common import (
    HARMLESS_TEXT,
    METRIC_FAMILIES,
    _json,
    _short,
    is_error_line,
)
from validation.gate import Gate


def health(http: httpx.Client, gate: Gate) -> dict:
    try:
        r = http.get("/health", timeout=10)
    except httpx.HTTPError as exc:
        gate.fail("health.status", None, f"GET /health: {type(exc).__name__}: {exc}")
    body = _json(r)
    gate.measure("health.status", r.status_code, detail=f"GET /health -> {_short(r.text)}", soft=True)
    status = body.get("status") if isinstance(body, dict) else None
    gate.measure(
        "health.body",
        status if status is not None else f"(not a JSON object: {_short(r.text, 60)})",
        detail=f"body {_short(r.text)}",
        soft=True,
    )
    gate.raise_pending()
    return body


def build(http: httpx.Client, gate: Gate, expected: str | None, source: str) -> None:
    """health.build: GET /health reports the build the gate expects (`source` says where that came from;
    with no expected build the criterion is skipped with `source` as the reason, never passed)."""
    if not expected:
        gate.skip("health.build", source)
    try:
        r = http.get("/health", timeout=10)
    except httpx.HTTPError as exc:
        gate.fail("health.build", None, f"GET /health: {type(exc).__name__}: {exc}")
    body = _json(r)
    reported = body.get("build") if isinstance(body, dict) else None
    gate.measure("health.build", reported == expected,
                 detail=f"GET /health build={reported!r}, expected {expected!r} ({source})")


def startup(gate: Gate, health_seconds: float | None) -> None:
    gate.require("startup.health_time")
    if health_seconds is None:
        gate.skip("startup.health_time", "the target was not started by the gate")
    gate.measure("startup.health_time", round(health_seconds, 2), detail="start to first GET /health 200")


def ready(gate: Gate, state: dict, since_start: float) -> None:
    """Gate `ready.time`: `since_start` = seconds from the target's start to when polling began."""
    total = round(since_start + state["seconds"], 2)
    if not state["ok"]:
        gate.fail("ready.time", total, f"GET /ready never answered 200 (last: {state['last']})")
    gate.measure("ready.time", total, detail=f"GET /ready -> {state['last']}")


def ready_truthful(http: httpx.Client, gate: Gate) -> None:
    """`ready.truthful`, by its effect: while GET /ready says ready, a model is loaded, the one it
    names: GET /api/models shows it as current with state ready, and GET /health agrees."""
    r = http.get("/ready", timeout=30)
    body, models, health = _json(r), _json(http.get("/api/models", timeout=30)), _json(http.get("/health", timeout=30))
    body, models, health = (x if isinstance(x, dict) else {} for x in (body, models, health))
    current = models.get("current").get("name") if isinstance(models.get("current"), dict) else None
    problems = []
    if r.status_code != 200:
        problems.append(f"GET /ready -> {r.status_code} {_short(r.text, 80)}")
    elif models.get("state") != "ready" or not current:
        problems.append(f"GET /ready says ready, but GET /api/models has state {models.get('state')!r}, current {current!r}")
    elif body.get("model") != current:
        problems.append(f"GET /ready names {body.get('model')!r}, GET /api/models has {current!r} loaded")
    if r.status_code == 200 and health.get("model_state") != "ready":
        problems.append(f"GET /ready says ready, but GET /health has model_state {health.get('model_state')!r}")
    gate.measure("ready.truthful", not problems,
                 detail="; ".join(problems) or f"/ready, /api/models and /health agree: {current} loaded")


def ui(http: httpx.Client, gate: Gate, elem_ids: list[str], api_names: list[str]) -> None:
    r = http.get("/", timeout=30)
    html_ok = r.status_code == 200 and "<html" in r.text.lower() and "gradio" in r.text.lower()
    gate.measure(
        "ui.page",
        r.status_code if html_ok else (r.status_code if r.status_code != 200 else "200 but not a Gradio page"),
        detail=f"GET / -> {r.headers.get('content-type', '?')}, {len(r.content)} bytes",
        soft=True,
    )
    r = http.get("/config", timeout=30)
    cfg = _json(r)
    if r.status_code != 200 or not isinstance(cfg, dict) or "components" not in cfg:
        gate.measure(
            "ui.config",
            r.status_code if r.status_code != 200 else "200 without components",
            detail=f"GET /config -> {_short(r.text, 120)}",
            soft=True,
        )
        found: set[str] = set()
    else:
        gate.measure("ui.config", 200, detail=f"Gradio {cfg.get('version', '?')}, {len(cfg['components'])} components", soft=True)
        found = {str(c.get("props", {}).get("elem_id")) for c in cfg["components"] if isinstance(c, dict)}
    missing = [e for e in elem_ids if e not in found]
    gate.measure(
        "ui.elements_missing",
        missing,
        detail=f"{len(elem_ids) - len(missing)}/{len(elem_ids)} elem_ids found",
        soft=True,
    )
    r = http.get("/gradio_api/info", timeout=30)
    info = _json(r)
    endpoints = set(info.get("named_endpoints", {})) if isinstance(info, dict) else set()
    missing_api = [a for a in api_names if f"/{a}" not in endpoints]
    gate.measure(
        "ui.api_missing",
        missing_api,
        detail=f"GET /gradio_api/info -> {r.status_code}, {len(endpoints)} named endpoints",
        soft=True,
    )
    gate.raise_pending()


def metrics(http: httpx.Client, gate: Gate) -> list[str]:
    from prometheus_client.parser import text_string_to_metric_families

    r = http.get("/metrics", timeout=10)
    try:
        if r.status_code != 200:
            raise ValueError(f"status {r.status_code}")
        families = [f.name for f in text_string_to_metric_families(r.text)]
        if not families:
            raise ValueError("no metric families")
    except Exception as exc:  # noqa: BLE001 - the parser raises several kinds
        gate.fail("metrics.parse", False, f"GET /metrics: {type(exc).__name__}: {_short(str(exc), 160)}")
    gate.measure("metrics.parse", True, detail=f"{len(families)} families")
    missing = [m for m in METRIC_FAMILIES if m not in families]
    gate.measure("metrics.families_missing", missing, detail=f"{len(families)} families parsed")
    return families


def memory(gate: Gate, sample: dict | None) -> None:
    if not sample:
        gate.skip("memory.idle", "no memory sample from this target")
    mb = round(sample["memory_bytes"] / 2**20, 1)
    gate.measure("memory.idle", mb, detail=sample.get("source", ""))


def _request_burst(http: httpx.Client, n: int, tag: str) -> list[str]:
    """`n` rules evaluations, each of a new text, and a short base-model generation every tenth;
    the answers that were not 200."""
    bad = []
    for i in range(n):
        r = http.post("/api/evaluate", json={"text": f"{tag} {i}: {HARMLESS_TEXT}", "mode": "rules"}, timeout=30)
        if r.status_code != 200:
            bad.append(f"evaluate {r.status_code}")
        if i % 10 == 0:
            r = http.post("/api/generate", json={"prompt": f"Say hello ({tag} {i})", "max_new_tokens": 4,
                                                 "compare": False}, timeout=60)
            if r.status_code != 200:
                bad.append(f"generate {r.status_code}")
    return bad


def memory_growth(http: httpx.Client, gate: Gate, sample, requests: int = 200) -> None:
    """`memory.growth`: memory in use after `requests` evaluations (and a short generation every
    tenth) minus before them, after a warm-up burst of the same, so allocator warm-up is not counted
    and a per-request leak is. `sample()` is the target's resource sample."""
    _request_burst(http, requests // 5, "warm-up")
    before = sample()
    if not before:
        gate.skip("memory.growth", "no memory sample from this target")
    bad = _request_burst(http, requests, "request")
    after = sample()
    growth = round((after["memory_bytes"] - before["memory_bytes"]) / 2**20, 1)
    gate.measure("memory.growth", growth,
                 detail=f"{requests} evaluations + {requests // 10} generations: {before['memory_bytes'] / 2**20:.0f}"
                        f" -> {after['memory_bytes'] / 2**20:.0f} MB ({before.get('source', '')})"
                        + (f"; not 200: {', '.join(bad[:5])}" if bad else ""))


def log_errors(gate: Gate, text: str, source: str = "log") -> list[str]:
    lines = [ln for ln in text.splitlines() if is_error_line(ln)]
    detail = f"{source}: {len(text.splitlines())} lines"
    if lines:
        detail += "; first: " + " | ".join(_short(ln, 160) for ln in lines[:3])
    gate.measure("container.log_errors", len(lines), detail=detail)
    return lines
