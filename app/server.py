"""FastAPI server: probes, metrics, JSON routes (docs/http-api.md), the Gradio UI mounted at /.

One ASGI middleware guards every request, outermost first: metrics, basic auth (all but /health),
rate limit (actions only), body size limit (actions only). Every error is JSON naming the field.
On Fly.io a second one keeps each browser's UI on one machine (app/affinity.py).
"""

import base64
import binascii
import errno
import logging
import secrets
import threading
import time
from typing import Literal

from fastapi import Body, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics, schemas
from app.affinity import FlyReplay
from app.config import Settings
from app.errors import ApiError
from app.schemas import GUARDED, STORED, WITH_BODY
from app.service import Service

log = logging.getLogger(__name__)
PROBES = ("/health", "/ready", "/metrics")
# Requests that do work (and so are rate-limited and size-limited): our actions and Gradio's API calls.
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "QUERY")
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


async def _or_default(request: Request, body, model):
    """An optional body: none means every default; JSON null (which FastAPI also hands over as None)
    is not an object of the route's fields."""
    if body is not None:
        return body
    if (await request.body()).strip():
        raise ApiError(422, "body", "request body must be a JSON object of this route's fields, or no body")
    return model()


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document, less the JSON it assumes for the 200 of routes that answer text (/metrics,
    impact files): their own media types are declared on the route."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for operations in schema["paths"].values():
            for op in operations.values():
                ok = op["responses"].get("200", {}).get("content", {})
                if len(ok) > 1 and ok.get("application/json") == {"schema": {}}:
                    del ok["application/json"]
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings, service: Service | None = None, *, with_ui: bool = True) -> FastAPI:
    service = service or Service(settings)
    app = FastAPI(title="Constitutional AI demo", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.service = service

    _error_handlers(app)
    errors, R = schemas.error_responses, service.requests
    _probe_routes(app, service, errors)
    _action_routes(app, service, errors, R)
    _job_routes(app, service, errors, R)
    _method_fallbacks(app)
    app.openapi = lambda: _openapi(app)
    if with_ui:
        import gradio as gr

        from app.ui import build_ui
        blocks = build_ui(service)
        blocks.queue(default_concurrency_limit=settings.queue_concurrency, max_size=settings.queue_max_size)
        app = gr.mount_gradio_app(app, blocks, path="/", show_error=False)
    if settings.fly_machine_id:
        app.add_middleware(FlyReplay, machine_id=settings.fly_machine_id)
    app.add_middleware(Guard, settings=settings)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error as the one JSON shape: ApiError, pydantic's, Starlette's."""
    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return _json_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        return _json_error(schemas.invalid(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8)
            return _json_error(ApiError(400, "body", f"request body is not valid UTF-8 JSON: {exc.detail}"))
        return _json_error(ApiError(exc.status_code, None, str(exc.detail),
                                    error="not_found" if exc.status_code == 404 else "http_error"))


async def _call(fn, *args):
    """A blocking service call off the event loop; a full checkpoint volume is a 507."""
    try:
        return await run_in_threadpool(fn, *args)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        log.error("checkpoint volume full", extra={"error": str(exc)})
        raise ApiError(507, None, "no space left on the checkpoint volume; delete old runs or grow the volume",
                       error="insufficient_storage") from None


def _probe_routes(app: FastAPI, service: Service, errors) -> None:
    """The platform's probes and Prometheus."""
    @app.get("/health", response_model=schemas.Health, summary="Liveness: 200 while the process serves")
    async def health():
        return service.health()

    @app.get("/ready", response_model=schemas.Ready, summary="Readiness: 200 once a model is loaded",
             responses={503: {"model": schemas.Ready, "description": "not ready yet (or the load failed)"},
                        **errors(401)})
    async def ready():
        ok, body = service.ready()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics (text format)",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(401)})
    async def prometheus():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _action_routes(app: FastAPI, service: Service, errors, R) -> None:
    """Models, evaluation, generation and critique."""
    @app.get("/api/models", response_model=schemas.Models, responses=errors(*GUARDED))
    async def list_models():
        return service.models()

    @app.post("/api/models/load", response_model=schemas.Loaded,
              responses=errors(*GUARDED, *WITH_BODY, *STORED, 403, 404, 409))
    async def load_model(body: R.LoadModelRequest):
        return await _call(service.load_model, body)

    @app.post("/api/evaluate", response_model=schemas.Evaluation, responses=errors(*GUARDED, *WITH_BODY))
    async def evaluate(body: R.EvaluateRequest):
        return await _call(service.evaluate, body)

    @app.post("/api/generate", response_model=schemas.Generation, responses=errors(*GUARDED, *WITH_BODY, 409))
    async def generate(body: R.GenerateRequest):
        return await _call(service.generate, body)

    @app.post("/api/critique", response_model=schemas.Trace, responses=errors(*GUARDED, *WITH_BODY, 409))
    async def critique(body: R.CritiqueRequest):
        return await _call(service.critique, body)


def _job_routes(app: FastAPI, service: Service, errors, R) -> None:
    """Training jobs, runs and impact reports."""
    @app.post("/api/train", status_code=202, response_model=schemas.Job,
              responses=errors(*GUARDED, *WITH_BODY, *STORED, 409, 507))
    async def train(request: Request, body: R.TrainRequest = Body(None)):
        body = await _or_default(request, body, R.TrainRequest)
        return await _call(service.start_training, body)

    @app.get("/api/train", response_model=schemas.Jobs, responses=errors(*GUARDED))
    async def jobs():
        return service.jobs()

    @app.get("/api/train/{job_id}", response_model=schemas.Job, responses=errors(*GUARDED, 404))
    async def job(job_id: str):
        return service.job(job_id)

    @app.post("/api/train/{job_id}/cancel", status_code=202, response_model=schemas.Job,
              responses=errors(*GUARDED, *STORED, 404))
    async def cancel(job_id: str):
        return service.cancel(job_id)

    @app.get("/api/runs", response_model=schemas.Runs, responses=errors(*GUARDED, *STORED))
    async def runs():
        return await _call(service.runs)

    @app.get("/api/runs/{run_id}", response_model=schemas.Run, responses=errors(*GUARDED, *STORED, 404))
    async def run(run_id: str):
        return await _call(service.run, run_id)

    @app.get("/api/runs/{run_id}/impact.{kind}", summary="The run's last impact report, as a download",
             responses={200: {"content": {"application/json": {"schema": {"type": "object"}},
                                          "text/csv": {"schema": {"type": "string"}}}},
                        **errors(*GUARDED, *STORED, 404, 422)})
    async def impact_file(run_id: str, kind: Literal["json", "csv"]):
        text = await _call(service.impact_file, run_id, kind)
        media = "application/json" if kind == "json" else "text/csv"
        return PlainTextResponse(text, media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="impact-{run_id}.{kind}"'})

    @app.post("/api/impact", response_model=schemas.Impact, responses=errors(*GUARDED, *WITH_BODY, *STORED, 409, 507))
    async def impact(request: Request, body: R.ImpactRequest = Body(None)):
        body = await _or_default(request, body, R.ImpactRequest)
        return await _call(service.impact, body)


def _method_fallbacks(app: FastAPI) -> None:
    """405 with Allow on a known path; a JSON 404 on any other /api path."""
    # A known path asked with a method it does not declare: 405 with Allow. Any other /api path: a
    # JSON 404 (not the UI's HTML page: the UI is mounted at /). Neither is an operation of the API.
    declared: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            declared.setdefault(route.path, set()).update(route.methods)
    for path, methods in declared.items():
        allow = ", ".join(sorted(methods))

        async def not_allowed(request: Request, allow=allow):
            raise ApiError(405, None, f"{request.method} is not allowed on {request.url.path}; allowed: {allow}",
                           error="method_not_allowed", headers={"Allow": allow})
        app.add_api_route(path, not_allowed, methods=sorted(set(HTTP_METHODS) - methods), include_in_schema=False)

    @app.api_route("/api/{rest:path}", methods=list(HTTP_METHODS), include_in_schema=False)
    async def unknown(rest: str):
        raise ApiError(404, None, f"no route /api/{rest}", error="not_found")
