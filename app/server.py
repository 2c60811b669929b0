"""FastAPI server: probes, metrics, JSON routes (docs/http-api.md), the Gradio UI mounted at /.

One ASGI middleware guards every request, outermost first: metrics, basic auth (all but /health),
rate limit (actions only), body size limit (actions only). Every error is JSON naming the field.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import logging
import secrets
import threading
import time

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics
from app.config import Settings
from app.errors import ApiError
from app.service import ALL, Service

log = logging.getLogger(__name__)
PROBES = ("/health", "/ready", "/metrics")
# Requests that do work (and so are rate-limited and size-limited): our actions and Gradio's API calls.
ACTION_PREFIXES = ("/api/", "/gradio_api/queue/join", "/gradio_api/call/", "/gradio_api/run/")


def _json_error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _send_error(send, exc: ApiError) -> None:
    response = _json_error(exc)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class RateLimiter:
    """Token bucket per client: `per_minute` requests, refilled continuously."""

    def __init__(self, per_minute: int):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self.lock = threading.Lock()
        self.pruned = time.monotonic()

    def retry_after(self, client: str) -> float:
        """0 when the request may go ahead, else seconds until a token is free."""
        now = time.monotonic()
        with self.lock:
            if now - self.pruned > 60:  # a bucket full again is the same as none: drop it
                self.buckets = {c: (t, w) for c, (t, w) in self.buckets.items()
                                if t + (now - w) * self.rate < self.capacity}
                self.pruned = now
            tokens, last = self.buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[client] = (tokens - 1, now)
                return 0.0
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate


class Guard:
    def __init__(self, app, settings: Settings):
        self.app = app
        # bytes: compare_digest refuses non-ASCII str (a 500); credentials are UTF-8 (RFC 7617)
        self.auth = tuple(part.encode("utf-8") for part in settings.auth) if settings.auth else None
        self.max_body = settings.max_body_bytes
        self.limiter = RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": None}  # set when the response starts

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_wrapper)
        except Exception:  # a bug must not leak a traceback to the client nor stop the server
            log.exception("unhandled error", extra={"path": scope["path"]})
            if status["code"] is None:  # nothing sent yet
                await _send_error(send_wrapper, ApiError(500, None, "internal error; see the server log",
                                                         error="internal"))
        finally:
            route = _route_label(scope)
            metrics.REQUESTS.labels(scope["method"], route, str(status["code"] or 500)).inc()
            metrics.LATENCY.labels(route).observe(time.perf_counter() - started)

    async def _guarded(self, scope, receive, send):
        path = scope["path"]
        headers = dict(scope["headers"])
        if self.auth and path != "/health" and not self._authorized(headers.get(b"authorization", b"")):
            return await _send_error(send, ApiError(401, None, "authentication required", error="unauthorized",
                                                    headers={"WWW-Authenticate": 'Basic realm="cai-demo"'}))
        if not path.startswith(ACTION_PREFIXES):
            return await self.app(scope, receive, send)
        if self.limiter:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.limiter.retry_after(client)
            if wait:
                return await _send_error(send, ApiError(429, None, "too many requests; slow down",
                                                        headers={"Retry-After": str(max(1, round(wait)))}))
        if scope["method"] in {"POST", "PUT", "PATCH"}:
            length = headers.get(b"content-length")
            too_large = ApiError(413, "body", f"request body is over the {self.max_body}-byte limit")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                return await _send_error(send, too_large)
            if length is None:  # chunked: read it (bounded) and replay it
                body, more = b"", True
                while more:
                    message = await receive()
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.max_body:
                        return await _send_error(send, too_large)
                sent = False

                async def replay():
                    nonlocal sent
                    if sent:
                        return await receive()
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await self.app(scope, replay, send)
        return await self.app(scope, receive, send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).partition(b":")
        except binascii.Error:
            return False
        return secrets.compare_digest(user, self.auth[0]) & secrets.compare_digest(password, self.auth[1])


def _route_label(scope) -> str:
    route = scope.get("route")
    if route is not None and getattr(route, "path", None) not in (None, "", "/"):
        return route.path
    path = scope["path"]
    return "/gradio_api" if path.startswith("/gradio_api") else "ui"


async def read_body(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "body", f"request body is not valid UTF-8 JSON: {str(exc)[:120]}") from None
    except RecursionError:  # e.g. [[[[...]]]] nested deeper than the parser's stack
        raise ApiError(400, "body", "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(422, "body", "request body must be a JSON object")
    return body


def create_app(settings: Settings, service: Service | None = None, *, with_ui: bool = True) -> FastAPI:
    service = service or Service(settings)
    app = FastAPI(title="Constitutional AI demo", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return _json_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        return _json_error(ApiError(422, loc[-1] if loc else "body", first.get("msg", "invalid input")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return _json_error(ApiError(exc.status_code, None, str(exc.detail),
                                    error="not_found" if exc.status_code == 404 else "http_error"))

    async def call(fn, *args):
        try:
            return await run_in_threadpool(fn, *args)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            log.error("checkpoint volume full", extra={"error": str(exc)})
            raise ApiError(507, None, "no space left on the checkpoint volume; delete old runs or grow the volume",
                           error="insufficient_storage") from None

    @app.get("/health")
    async def health():
        return service.health()

    @app.get("/ready")
    async def ready():
        ok, body = service.ready()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/models")
    async def list_models():
        return service.models()

    @app.post("/api/models/load")
    async def load_model(request: Request):
        body = await read_body(request)
        return await call(service.load_model, body.get("model"))

    @app.post("/api/evaluate")
    async def evaluate(request: Request):
        body = await read_body(request)
        return await call(service.evaluate, body.get("text"), body.get("mode", "rules"))

    @app.post("/api/generate")
    async def generate(request: Request):
        body = await read_body(request)
        return await call(service.generate, body.get("prompt"), body.get("max_new_tokens", 64),
                          body.get("temperature", 0.7), body.get("seed"), body.get("compare", True))

    @app.post("/api/critique")
    async def critique(request: Request):
        body = await read_body(request)
        return await call(service.critique, body.get("prompt"), body.get("rounds", 1),
                          body.get("max_new_tokens", 64), body.get("seed"))

    @app.post("/api/train", status_code=202)
    async def train(request: Request):
        body = await read_body(request)
        return await call(service.start_training, body.get("preset", "smoke"), body.get("seed"))

    @app.get("/api/train")
    async def jobs():
        return service.jobs()

    @app.get("/api/train/{job_id}")
    async def job(job_id: str):
        return service.job(job_id)

    @app.post("/api/train/{job_id}/cancel", status_code=202)
    async def cancel(job_id: str):
        return service.cancel(job_id)

    @app.get("/api/runs")
    async def runs():
        return await call(service.runs)

    @app.get("/api/runs/{run_id}")
    async def run(run_id: str):
        return await call(service.run, run_id)

    @app.get("/api/runs/{run_id}/impact.{kind}")
    async def impact_file(run_id: str, kind: str):
        if kind not in ("json", "csv"):
            raise ApiError(404, "kind", f"no impact.{kind}; use impact.json or impact.csv", error="not_found")
        text = await call(service.impact_file, run_id, kind)
        media = "application/json" if kind == "json" else "text/csv"
        return PlainTextResponse(text, media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="impact-{run_id}.{kind}"'})

    @app.post("/api/impact")
    async def impact(request: Request):
        body = await read_body(request)
        return await call(service.impact, body.get("limit", ALL), body.get("max_new_tokens", 64), body.get("seed"))

    # Unknown /api paths get a JSON 404 here instead of the UI's HTML page (the UI is mounted at /);
    # a known path asked with a method it does not declare gets 405 with Allow. Not an operation of
    # the API: left out of the OpenAPI document.
    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    async def unknown(request: Request, rest: str):
        allowed = sorted({method for route in request.app.router.routes
                          if isinstance(route, APIRoute) and route.include_in_schema
                          and route.path_regex.match(request.url.path) for method in route.methods})
        if allowed:
            raise ApiError(405, None, f"{request.method} is not allowed on {request.url.path}; allowed: "
                           f"{', '.join(allowed)}", error="method_not_allowed", headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, None, f"no route /api/{rest}", error="not_found")

    if with_ui:
        import gradio as gr

        from app.ui import build_ui
        blocks = build_ui(service)
        blocks.queue(default_concurrency_limit=settings.queue_concurrency, max_size=settings.queue_max_size)
        app = gr.mount_gradio_app(app, blocks, path="/", show_error=False)
    app.add_middleware(Guard, settings=settings)
    return app
