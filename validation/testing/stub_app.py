"""Deliberately broken subjects for the gate-sensitivity tests (tests/test_gate_*.py).

`StubApp(faults=...)` serves the app's HTTP contract (docs/http-api.md) from a thread, fast and
with no model: healthy by default, broken on request. Each fault breaks one thing:

    health_500        GET /health answers 500
    health_wrong_body GET /health answers 200 {"status": "ok"}
    never_ready       GET /ready stays 503
    load_failed       GET /ready answers 503 {"status": "failed"}: the model load failed
    ready_lies        GET /ready says ready while no model is loaded (GET /api/models: failed, none)
    no_config         GET /config 404 (no Gradio), page without Gradio
    missing_element   one elem_id (eval-button) absent from the Gradio config
    bad_metrics       /metrics is not Prometheus text
    tokens_not_counted  /api/generate answers, and the serving metrics (tokens, latencies) never move
    eval_no_flag      /api/evaluate never flags anything
    generate_empty    /api/generate answers 200 with an empty base text
    generate_no_eval  /api/generate answers 200 with the base text's evaluation missing its verdict
    train_fails       training ends in state failed, no checkpoint
    train_hangs       training stays running forever
    cancel_ignored    POST /api/train/{id}/cancel answers 202 cancelling, and the run goes on to succeed
    summary_disagrees a succeeded job's metrics count more better revisions than its trace holds
    slow=<seconds>    every /api/* answer is delayed (and /health when slow_health is set)
    error_log         the "log" (StubApp.logs()) has a Traceback in it
    down              every route answers 503 (add and remove it while the stub runs: an outage)

`StubApp(headers={...})` adds headers to every answer (e.g. Strict-Transport-Security).
/metrics also carries the app's user and serving families (app/metrics.py), counted as the app
counts them: GET / starts a session, each evaluation, generation and training start counts.

    with StubApp(faults={"health_500"}) as stub:
        httpx.get(stub.base_url + "/health")
Later sessions (e2e, perf, resilience) add faults here for their own checks.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from app import metrics as M
from validation.checks import METRIC_FAMILIES, ui_names
from validation.testing.server import LoopbackServer

GOOD_METRICS = "\n".join(
    [
        "# HELP cai_http_requests_total Requests.",
        "# TYPE cai_http_requests_total counter",
        'cai_http_requests_total{method="GET",route="/health",status="200"} 3.0',
        "# HELP cai_http_request_duration_seconds Latency.",
        "# TYPE cai_http_request_duration_seconds histogram",
        'cai_http_request_duration_seconds_bucket{route="/health",le="0.1"} 3.0',
        'cai_http_request_duration_seconds_bucket{route="/health",le="+Inf"} 3.0',
        'cai_http_request_duration_seconds_count{route="/health"} 3.0',
        'cai_http_request_duration_seconds_sum{route="/health"} 0.01',
        "# TYPE cai_model_load_seconds gauge",
        "cai_model_load_seconds 0.4",
        "# TYPE cai_model_loaded gauge",
        'cai_model_loaded{model="smollm2"} 1.0',
        "# TYPE cai_training_job_state gauge",
        'cai_training_job_state{state="succeeded"} 1.0',
        "# TYPE cai_training_runs_total counter",
        'cai_training_runs_total{state="succeeded"} 1.0',
        "# TYPE cai_checkpoint_volume_bytes gauge",
        'cai_checkpoint_volume_bytes{kind="free"} 5.0e+09',
        "# TYPE cai_training_runs_stored gauge",
        "cai_training_runs_stored 1.0",
        "# TYPE cai_cpu_cores gauge",
        "cai_cpu_cores 2.0",
        "# TYPE cai_runs_store_up gauge",
        "cai_runs_store_up 1.0",
        "# TYPE process_cpu_seconds_total counter",
        "process_cpu_seconds_total 12.5",
        "# TYPE process_resident_memory_bytes gauge",
        "process_resident_memory_bytes 2.5e+08",
        "",
    ]
)
Usage = dict[str, dict[tuple[tuple[str, str], ...], float]]  # family -> labels -> count


# A succeeded job's details and the summary they give (one epoch of two examples, batch 2).
STUB_RESULT = {
    "trace": [{"judge": {"verdict": "better", "revision_flagged": False}},
              {"judge": {"verdict": "worse", "revision_flagged": True}}],
    "losses": [[1, 1.5]],
    "metrics": {"revisions": 2, "revisions_better": 1, "revisions_same": 0, "revisions_worse": 1,
                "revisions_flagged": 1, "examples": 2, "loss_per_epoch": [1.5]},
}


def usage_text(usage: Usage) -> str:
    """The app's user and serving families in Prometheus text, at the stub's counts (0 when none)."""
    lines = []
    for metric in (*M.USER_METRICS, *M.SERVING_METRICS):
        name, kind = M.family(metric), metric.describe()[0].type
        lines.append(f"# TYPE {name} {kind}")
        for labels, n in (usage.get(name) or {(): 0.0}).items():
            pairs = [f'{k}="{v}"' for k, v in labels]
            braces = "{" + ",".join(pairs) + "}" if pairs else ""
            if kind == "histogram":
                inf = "{" + ",".join([*pairs, 'le="+Inf"']) + "}"
                lines += [f"{name}_bucket{inf} {n}", f"{name}_count{braces} {n}", f"{name}_sum{braces} {n * 0.1}"]
            else:
                lines.append(f"{name}{'_total' if kind == 'counter' else ''}{braces} {n}")
    return "\n".join(lines) + "\n"


assert all(f in GOOD_METRICS + usage_text({}) for f in METRIC_FAMILIES)

HARM_WORDS = ("steal", "break the window", "pick the lock", "weapon")


class StubApp(LoopbackServer):
    def __init__(self, faults: set[str] | None = None, slow: float = 0.0, slow_health: bool = False,
                 build: str = "stub-build", headers: dict[str, str] | None = None) -> None:
        self.faults = set(faults or ())
        self.build = build  # GET /health "build"
        self.headers = dict(headers or {})
        self.slow = slow
        self.slow_health = slow_health
        self.jobs: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.trained_run: str | None = None
        self.requests: list[str] = []
        self.usage: Usage = defaultdict(lambda: defaultdict(float))
        self._ids = itertools.count(1)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
                data = (
                    body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
                )
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in stub.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stub.requests.append(f"GET {self.path}")
                code, body, ctype = stub.route("GET", self.path, None)
                self._send(code, body, ctype)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                stub.requests.append(f"POST {self.path}")
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    self._send(400, {"error": "invalid_json", "field": "body", "message": "not JSON"})
                    return
                code, body, ctype = stub.route("POST", self.path, payload)
                self._send(code, body, ctype)

        super().__init__(Handler, poll_interval=0.02)

    def logs(self) -> str:
        lines = ['{"level": "INFO", "msg": "server started"}', '{"level": "INFO", "msg": "model smollm2 ready"}']
        if "error_log" in self.faults:
            lines += ["Traceback (most recent call last):", '  File "app/server.py", line 1', "RuntimeError: boom"]
        return "\n".join(lines) + "\n"

    def count(self, metric, n: float = 1, **labels: str) -> None:
        self.usage[M.family(metric)][tuple(sorted(labels.items()))] += n

    def _count_generation(self, rows: int) -> None:
        self.count(M.GENERATIONS)
        if "tokens_not_counted" not in self.faults:
            interactive = M.priority(background=False)
            self.count(M.GENERATED_TOKENS, 3 * rows, priority=interactive)
            self.count(M.FIRST_TOKEN_LATENCY, rows, priority=interactive)
            self.count(M.OUTPUT_TOKEN_LATENCY, rows, priority=interactive)

    # -- routes: a table of small handlers, each answering (status, body, content type)
    def route(self, method: str, path: str, payload: dict | None) -> tuple[int, Any, str]:
        if "down" in self.faults:
            return 503, {"error": "unavailable", "field": None, "message": "stub: down"}, JS
        if self.slow and (path.startswith("/api/") or (self.slow_health and path == "/health")):
            time.sleep(self.slow)
        for allowed, pattern, handler in ROUTES:
            if (allowed is None or allowed == method) and re.fullmatch(pattern, path):
                return handler(self, path, payload)
        return 404, {"error": "not_found", "field": None, "message": f"no route {method} {path}"}, JS

    def _health(self, path, payload):
        if "health_500" in self.faults:
            return 500, {"error": "internal"}, JS
        if "health_wrong_body" in self.faults:
            return 200, {"status": "ok"}, JS
        state = "failed" if "ready_lies" in self.faults else "ready"
        return 200, {"status": "healthy", "version": "stub", "build": self.build, "model": "smollm2",
                     "model_state": state}, JS

    def _ready(self, path, payload):
        if "never_ready" in self.faults:
            return 503, {"status": "loading", "error": None}, JS
        if "load_failed" in self.faults:
            return 503, {"status": "failed", "error": "RuntimeError: weights missing"}, JS
        return 200, {"status": "ready", "model": "smollm2"}, JS

    def _metrics(self, path, payload):
        if "bad_metrics" in self.faults:
            return 200, "<html>metrics {broken\n</html>", "text/html"
        return 200, GOOD_METRICS + usage_text(self.usage), "text/plain; version=0.0.4"

    def _page(self, path, payload):
        self.count(M.SESSIONS_STARTED)
        if "no_config" in self.faults:
            return 200, "<html><body>Hello</body></html>", "text/html"
        return 200, "<!doctype html><html><head><script>window.gradio_config = {}</script></head></html>", "text/html"

    def _config(self, path, payload):
        if "no_config" in self.faults:
            return 404, {"detail": "Not Found"}, JS
        elems, _ = ui_names()
        if "missing_element" in self.faults:
            elems = [e for e in elems if e != "eval-button"]
        return 200, {"version": "stub", "components": [{"id": i, "type": "textbox", "props": {"elem_id": e}}
                                                       for i, e in enumerate(elems)]}, JS

    def _api_info(self, path, payload):
        if "no_config" in self.faults:
            return 404, {"detail": "Not Found"}, JS
        _, apis = ui_names()
        return 200, {"named_endpoints": {f"/{a}": {"parameters": []} for a in apis}}, JS

    def _models(self, path, payload):
        lies = "ready_lies" in self.faults
        return 200, {"registry": [{"name": "smollm2", "description": "stub"}],
                     "current": None if lies else {"name": "smollm2", "parameters": 1234},
                     "state": "failed" if lies else "ready", "trained_run": self.trained_run}, JS

    def _load_model(self, path, payload):
        model = str(payload.get("model"))
        run = next((r["run_id"] for r in self.runs if model.endswith(f"runs/{r['run_id']}/trained")), None)
        if run and "checkpoint_unloadable" in self.faults:
            return 404, {"error": "not_found", "field": "model", "message": f"no model in {model!r}"}, JS
        if run:
            self.trained_run = run
        return 200, {"model": "smollm2" if run else model, "parameters": 1234, "device": "cpu",
                     "load_seconds": 0.01, "trained_run": run}, JS

    def _evaluate(self, path, payload):
        text = str(payload.get("text", "")).lower()
        harmful = any(w in text for w in HARM_WORDS) and "eval_no_flag" not in self.faults
        self.count(M.EVALUATIONS, mode=str(payload.get("mode", "rules")))
        return 200, {"mode": payload.get("mode", "rules"), "flagged": harmful,
                     "flagged_principles": ["harm_prevention"] if harmful else [],
                     "alignment_score": 0.636 if harmful else 1.0, "elapsed_s": 0.001}, JS

    def _generate(self, path, payload):
        f = self.faults
        ev = {"flagged": False, "flagged_principles": [], "alignment_score": 1.0}
        run = self.trained_run if payload.get("compare", True) else None
        base_text = "  \n" if "generate_empty" in f else "Be kind."
        base_ev = {"elapsed_s": 0.001} if "generate_no_eval" in f else ev
        trained_text = "Be kind." if "train_changes_nothing" in f else "I can't help with that; be kind."
        self._count_generation(rows=2 if run else 1)
        return 200, {"prompt": payload.get("prompt"), "base": {"text": base_text, "evaluation": base_ev, "elapsed_s": 0.01},
                     "trained": {"text": trained_text, "evaluation": ev, "elapsed_s": 0.01} if run else None,
                     "run_id": run}, JS

    def _train(self, path, payload):
        n = next(self._ids)
        self.count(M.TRAINING_STARTED, preset=str(payload.get("preset")))
        job = {"job_id": f"j-{n}", "run_id": f"run-{n}", "preset": payload.get("preset"), "state": "queued",
               "started": time.monotonic(), "step": 0, "total_steps": 2}
        self.jobs[job["job_id"]] = job
        return 202, {k: job[k] for k in ("job_id", "run_id", "state")}, JS

    def _job(self, path, payload):
        job = self.jobs.get(path.rsplit("/", 1)[1])
        if not job:
            return 404, {"error": "not_found", "field": "job_id", "message": "no such job"}, JS
        if job["state"] == "cancelling" or "train_hangs" in self.faults:
            job["state"] = "cancelled" if job["state"] == "cancelling" else "running"
            if job["state"] == "cancelled" and not any(r["run_id"] == job["run_id"] for r in self.runs):
                self.runs.insert(0, {"run_id": job["run_id"], "state": "cancelled", "trained": None})
        elif time.monotonic() - job["started"] > 0.3 and job["state"] not in ("succeeded", "failed"):
            self._finish(job)
        elif job["state"] == "queued":
            job["state"] = "running"
        return 200, {k: v for k, v in job.items() if k != "started"}, JS

    def _finish(self, job: dict) -> None:
        ok = "train_fails" not in self.faults
        job.update(state="succeeded" if ok else "failed", step=2, loss=1.5,
                   checkpoint=f"runs/{job['run_id']}/trained" if ok else None, error=None if ok else "stub failure",
                   **(STUB_RESULT if ok else {}))
        if ok and "summary_disagrees" in self.faults:
            job["metrics"] = {**job["metrics"], "revisions_better": 2}
        self.runs.insert(0, {"run_id": job["run_id"], "state": job["state"], "trained": "trained" if ok else None,
                             "preset": job["preset"], "metrics": job.get("metrics"),
                             "preset_config": {"epochs": 1, "batch_size": 2}})
        if ok:
            self.trained_run = job["run_id"]

    def _cancel(self, path, payload):
        job = self.jobs.get(path.split("/")[3])
        if not job:
            return 404, {"error": "not_found", "field": "job_id", "message": "no such job"}, JS
        self.cancelled = [*getattr(self, "cancelled", []), job["job_id"]]
        if "cancel_ignored" in self.faults:
            return 202, {**{k: v for k, v in job.items() if k != "started"}, "state": "cancelling"}, JS
        job["state"] = "cancelling"
        return 202, {k: v for k, v in job.items() if k != "started"}, JS

    def _run(self, path, payload):
        run = next((r for r in self.runs if r["run_id"] == path.rsplit("/", 1)[1]), None)
        if run is None:
            return 404, {"error": "not_found", "field": "run_id", "message": "no such run"}, JS
        return 200, run, JS

    def _runs(self, path, payload):
        return 200, {"runs": self.runs}, JS


JS = "application/json"
# (method, or None for any; the path as a regular expression; the handler)
ROUTES: list[tuple[str | None, str, Callable[..., tuple[int, Any, str]]]] = [
    (None, "/health", StubApp._health),
    (None, "/ready", StubApp._ready),
    (None, "/metrics", StubApp._metrics),
    (None, "/", StubApp._page),
    (None, "/config", StubApp._config),
    (None, "/gradio_api/info", StubApp._api_info),
    (None, "/api/models", StubApp._models),
    ("POST", "/api/models/load", StubApp._load_model),
    ("POST", "/api/evaluate", StubApp._evaluate),
    ("POST", "/api/generate", StubApp._generate),
    ("POST", "/api/train", StubApp._train),
    ("GET", "/api/train/[^/]+", StubApp._job),
    ("POST", "/api/train/[^/]+/cancel", StubApp._cancel),
    ("GET", "/api/runs/[^/]+", StubApp._run),
    (None, "/api/runs", StubApp._runs),
]
