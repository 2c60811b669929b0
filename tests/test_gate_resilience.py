"""The resilience gate must be able to fail: its checks against subjects that lose a checkpoint on a
kill, answer 500 to bad input, leave a route open without auth, never rate-limit, leak a key, or err
outside a restart. Stub servers in threads and files in tmp_path: the whole file takes ~1 s."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from app.schemas import integer
from validation.resilience import battery, data_checks, security_checks
from validation.testing import expect_failure, make_gate
from validation.testing.server import LoopbackServer

AUTH = ("gate", "s3cret")


class Stub(LoopbackServer):
    """A tiny HTTP subject: `answer(method, path, body, headers) -> (status, json, headers)`."""

    def __init__(self, answer):
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # one write per answer (no Nagle / delayed-ACK stalls)

            def log_message(self, *a):
                pass

            def _go(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding") == "chunked":
                    raw = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if not size:
                            self.rfile.readline()
                            break
                        raw += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    raw = self.rfile.read(n) if n else b""
                status, body, headers = stub.answer(self.command, self.path, raw, self.headers)
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _go

        self.answer = answer
        super().__init__(H, poll_interval=0.02)
        self.url = self.base_url


HEALTH = (200, {"status": "healthy"}, None)


def _field_of(path: str, raw: bytes) -> str | None:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return "body"
    if not isinstance(body, dict):
        return "body"
    return None


def good_validator(method, path, raw, headers):
    """Rejects everything the way the app should (for the subset of cases used here)."""
    if path == "/health":
        return HEALTH
    field = _field_of(path, raw) if raw else None
    return 422, {"error": "invalid_input", "field": field or "text", "message": "bad"}, None


def crash_on_bad_input(method, path, raw, headers):
    if path == "/health":
        return HEALTH
    return 500, {"error": "internal", "field": None, "message": "Traceback ..."}, None


def accepts_anything(method, path, raw, headers):
    if path == "/health":
        return HEALTH
    return 200, {"flagged": False}, None


CASES = [c for c in battery.json_cases() if c.route == "POST /api/evaluate" and c.field in ("text", "body")
         and c.what != "huge"]


def _run(answer, gate):
    with Stub(answer) as s, httpx.Client(base_url=s.url, timeout=10) as c:
        outcomes, down = battery.run_cases(c, CASES)
        battery.bad_inputs(gate, outcomes, down)


def test_battery_passes_a_subject_that_rejects_properly():
    gate = make_gate("strict", resilience__bad_inputs_tried=10)
    _run(good_validator, gate)
    assert {r.verdict for r in gate.recorder.results} == {"pass"}


def test_battery_fails_on_500():
    e = expect_failure(_run, crash_on_bad_input, make_gate("plan"), criterion="resilience.bad_input_5xx")
    assert "[resilience.bad_input_rejected] FAILED" in str(e)


def test_battery_fails_when_bad_input_is_accepted():
    expect_failure(_run, accepts_anything, make_gate("plan"), criterion="resilience.bad_input_rejected")


def test_battery_fails_when_the_error_names_the_wrong_field():
    def wrong_field(method, path, raw, headers):
        return HEALTH if path == "/health" else (422, {"error": "invalid_input", "field": "mode", "message": "x"}, None)

    e = expect_failure(_run, wrong_field, make_gate("plan"), criterion="resilience.bad_input_rejected")
    assert "expected 'text'" in str(e) or "expected 'body'" in str(e)


def test_battery_fails_when_the_server_goes_down():
    state = {"n": 0}

    def dies(method, path, raw, headers):
        state["n"] += 1
        if path == "/health":
            return (500, {"error": "down"}, None) if state["n"] > 5 else HEALTH
        return good_validator(method, path, raw, headers)

    gate = make_gate("plan")
    with Stub(dies) as s, httpx.Client(base_url=s.url, timeout=10) as c:
        cases = [c_ for c_ in battery.json_cases() if c_.path in ("/api/evaluate", "/api/generate")][:60]
        outcomes, down = battery.run_cases(c, cases)
        expect_failure(battery.bad_inputs, gate, outcomes, down, criterion="resilience.server_down")


# --- kill / restart: data --------------------------------------------------------------------


def _run_folder(root: Path, run_id: str, state: str, trained: bool, weights: bytes = b"w" * 64) -> None:
    d = root / "runs" / run_id
    for kind in ("base", *(("trained",) if trained else ())):
        (d / kind).mkdir(parents=True, exist_ok=True)
        (d / kind / "config.json").write_text("{}")
        (d / kind / "model.safetensors").write_bytes(weights)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metadata.json").write_text(json.dumps({"run_id": run_id, "state": state, "trained": "trained" if trained else None}))


def test_data_loss_passes_when_everything_survives(tmp_path):
    _run_folder(tmp_path, "r1", "succeeded", True)
    before = data_checks.snapshot_runs(tmp_path)
    gate = make_gate("plan")
    data_checks.data_loss(gate, before, data_checks.snapshot_runs(tmp_path), [{"run_id": "r1", "state": "succeeded",
                                                                         "trained": "trained"}], "same")
    assert gate.recorder.results[-1].verdict == "pass"


def test_data_loss_fails_when_a_checkpoint_is_lost_on_kill(tmp_path):
    _run_folder(tmp_path, "r1", "succeeded", True)
    before = data_checks.snapshot_runs(tmp_path)
    (tmp_path / "runs" / "r1" / "trained" / "model.safetensors").unlink()  # the "kill" lost it
    listed = [{"run_id": "r1", "state": "succeeded", "trained": "trained"}]
    e = expect_failure(data_checks.data_loss, make_gate("plan"), before, data_checks.snapshot_runs(tmp_path), listed, "kill",
                       criterion="data.loss", measured="1")
    assert "trained/model.safetensors: missing" in str(e)


def test_data_loss_fails_when_a_run_is_no_longer_listed(tmp_path):
    _run_folder(tmp_path, "r1", "succeeded", True)
    snap = data_checks.snapshot_runs(tmp_path)
    expect_failure(data_checks.data_loss, make_gate("plan"), snap, snap, [], "kill", criterion="data.loss")


def test_killed_run_reported_succeeded_or_half_written_fails(tmp_path):
    _run_folder(tmp_path, "r2", "succeeded", False)  # says succeeded, has no trained/
    (tmp_path / "runs" / "r2" / "trained").mkdir()
    (tmp_path / "runs" / "r2" / "trained" / "config.json").write_text("{}")  # half a checkpoint
    after = data_checks.snapshot_runs(tmp_path)
    e = expect_failure(data_checks.interrupted_run, make_gate("plan"), "r2", after, [{"run_id": "r2", "state": "succeeded"}],
                       "kill", criterion="resilience.killed_run_state", measured="succeeded")
    assert "[resilience.partial_checkpoints] FAILED" in str(e)


def test_restart_errors_outside_the_window_fail():
    S = data_checks.Sample
    samples = [S(0.0, True, "ok"), S(1.0, False, "health 500"), S(2.0, True, "ok"),  # error before the restart
               S(3.0, False, "ConnectError"), S(4.0, True, "ok"), S(5.0, True, "ok")]
    e = expect_failure(data_checks.restart_window, make_gate("plan"), samples, 2.5, 3.9,
                       criterion="resilience.errors_outside_restart", measured="1")
    assert "perf.error_rate" in str(e)
    ok = make_gate("plan")
    data_checks.restart_window(ok, [s for s in samples if s.t != 1.0], 2.5, 3.9)
    assert {r.id: r.measured for r in ok.recorder.results}["resilience.recovery_time"] == 1.5


# --- auth, rate limit, secrets -----------------------------------------------------------------


def _authed(open_paths=()):
    token = "Basic " + base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()

    def answer(method, path, raw, headers):
        if path == "/health" or path in open_paths or headers.get("Authorization") == token:
            return 200, {"status": "healthy", "event_id": "e"}, None
        return 401, {"error": "unauthorized", "field": None, "message": "auth"}, {"WWW-Authenticate": 'Basic realm="x"'}

    return answer


def test_auth_passes_when_every_route_is_protected():
    gate = make_gate("plan")
    with Stub(_authed()) as s, httpx.Client(base_url=s.url) as c:
        security_checks.auth_routes(gate, c, AUTH)
    assert {r.verdict for r in gate.recorder.results} == {"pass"}


def test_auth_fails_when_a_route_is_open():
    with Stub(_authed(open_paths=("/api/runs",))) as s, httpx.Client(base_url=s.url) as c:
        e = expect_failure(security_checks.auth_routes, make_gate("plan"), c, AUTH, criterion="security.auth_unprotected")
    assert "GET /api/runs -> 200" in str(e)


def test_rate_limit_fails_without_429_or_retry_after():
    with Stub(_authed()) as s, httpx.Client(base_url=s.url) as c:
        expect_failure(security_checks.rate_limit, make_gate("plan"), c, 5, auth=AUTH, extra=5, criterion="security.rate_limited")

    def no_retry_after(method, path, raw, headers):
        return HEALTH if path == "/health" else (429, {"error": "rate_limited", "field": None, "message": "x"}, None)

    with Stub(no_retry_after) as s, httpx.Client(base_url=s.url) as c:
        e = expect_failure(security_checks.rate_limit, make_gate("plan"), c, 2, extra=2, criterion="security.rate_limited")
    assert "Retry-After" in str(e)


def test_secrets_found_in_env_history_and_layers():
    history = ["/bin/sh -c #(nop)  ENV HF_TOKEN=hf_" + "a" * 34, "RUN pip install x"]
    env = ["PATH=/usr/bin", "BASIC_AUTH=admin:hunter22"]
    e = expect_failure(security_checks.secrets, make_gate("plan"), env, history, {"layers": 1, "files": 2, "read": 2,
                       "found": ["layer file app/.env (secret-looking name)"]}, "stub image",
                       criterion="security.secrets_found")
    assert "history step 0" in str(e) and "BASIC_AUTH" in str(e) and "app/.env" in str(e)
    clean = make_gate("plan")
    security_checks.secrets(clean, ["PATH=/usr/bin", "HF_HUB_OFFLINE=1", "BASIC_AUTH="], ["ARG APP_UID=10001"], None, "ok")
    assert clean.recorder.results[-1].verdict == "pass"


def test_layer_scan_finds_a_key_file(tmp_path):
    import io
    import tarfile

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for name, text in (("app/id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"), ("app/ok.txt", "hello")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            t.addfile(info, io.BytesIO(text.encode()))
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w") as t:
        info = tarfile.TarInfo("abc/layer.tar")
        info.size = len(layer.getvalue())
        t.addfile(info, io.BytesIO(layer.getvalue()))
    outer.seek(0)
    res = security_checks.scan_layers(outer)
    assert any("app/id_rsa" in f for f in res["found"]) and res["files"] == 2


def test_trust_remote_code_grep(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = load(name, trust_remote_code=True)\ny = load(n, trust_remote_code=False)\n")
    hits = security_checks.trust_remote_code_source(tmp_path / "pkg")
    assert len(hits) == 1 and "m.py:1" in hits[0]
    assert security_checks.trust_remote_code_source() == [], "the app's own source enables trust_remote_code somewhere"


@pytest.mark.parametrize("value", ["ghp_" + "x" * 36, "AKIAABCDEFGHIJKLMNOP", "https://user:pa55word@host/x"])
def test_key_like_values(value):
    assert security_checks.find_secrets(f"something {value} else", "t")


# ---- resilience.schema_failures: schemathesis against a small FastAPI app, kept and broken -------

class _Echo(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    n: integer(0, 9)  # the app's integer: 3.0 is 3, as in JSON Schema


class _Answer(BaseModel):
    n: int


def _contract_app(broken: bool, valid_calls: dict | None = None, slow_path: str = "/api/echo") -> FastAPI:
    """`valid_calls`, when given, counts the valid requests each path received; `slow_path` serves
    the same echo on another path (one the contract sends fewer cases)."""
    api = FastAPI(openapi_url="/api/openapi.json")
    calls = valid_calls if valid_calls is not None else {}

    def route(path):
        async def echo(body: _Echo):
            calls[path] = calls.get(path, 0) + 1
            if broken and body.n > 4:
                raise RuntimeError("a bug the schema does not promise")  # a 500
            return {"n": body.n}
        echo.__annotations__ = {"body": _Echo}  # real classes: this module's annotations are strings
        api.post(path, response_model=_Answer, responses={400: {"description": "not JSON"}})(echo)
    for path in dict.fromkeys(["/api/echo", slow_path]):
        route(path)
    return api


@pytest.fixture
def contract_server():
    import uvicorn

    from validation.targets import free_port

    servers = []

    def start(app):
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"
    yield start
    for s in servers:
        s.should_exit = True


def _fuzz(base_url, tmp_path):
    from validation.resilience import contract

    return contract.fuzz(base_url, tmp_path / "st", max_examples=20, say=lambda *_: None, timeout=300)


def test_schema_failures_pass_a_subject_that_keeps_its_contract(contract_server, tmp_path):
    from validation.resilience import contract

    result = _fuzz(contract_server(_contract_app(broken=False)), tmp_path)
    assert result.failures == [] and result.operations == 1 and result.reports["JUnit"].exists()
    contract.record(make_gate("plan"), result)


def test_schema_failures_fail_on_a_server_error(contract_server, tmp_path):
    from validation.resilience import contract

    result = _fuzz(contract_server(_contract_app(broken=True)), tmp_path)
    assert any(f.startswith("POST /api/echo: ") for f in result.failures), result.failures
    expect_failure(contract.record, make_gate("plan"), result, criterion="resilience.schema_failures")


def test_a_slow_operation_gets_its_own_smaller_number_of_valid_cases(contract_server, tmp_path):
    from validation.resilience import contract

    (slow, limit), = contract.SLOW_OPERATIONS.items()
    calls: dict[str, int] = {}
    result = _fuzz(contract_server(_contract_app(broken=False, valid_calls=calls, slow_path=slow)), tmp_path)
    assert result.failures == [] and result.operations == 2
    # the examples phase and the stateful phase may add a case or two beside the fuzzed ones
    assert calls[slow] <= limit + 3 < calls["/api/echo"], calls


def test_schema_failures_error_when_schemathesis_cannot_run(tmp_path):
    from validation.resilience import contract
    from validation.targets import free_port

    with pytest.raises(contract.FuzzError, match="without a verdict"):
        contract.fuzz(f"http://127.0.0.1:{free_port()}", tmp_path / "st", say=lambda *_: None, timeout=120,
                      wait_for_schema_s=1)


def test_the_apps_own_source_reads_as_free_of_secrets():
    """The image scan (security.secrets_found) reads every app file in the image: a constant whose name
    ends like a credential's (`..._TOKEN = ...`) fails it there, after a full image build. Caught here
    first, in a second."""
    root = Path(__file__).resolve().parent.parent / "app"
    found = [f"{p.relative_to(root.parent)}: {m.group(0)[:60]}" for p in sorted(root.rglob("*.py"))
             for m in security_checks.SECRET_ASSIGNMENT.finditer(p.read_text())]
    assert not found, f"key-like assignments the image scan would report: {found}"
    assert security_checks.SECRET_ASSIGNMENT.search("TIME_PER_OUTPUT_TOKEN = Histogram(")  # what it catches
