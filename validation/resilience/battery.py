"""The bad-input battery: every JSON route and the Gradio API, fed inputs a client should never send.

    cases = json_cases() + gradio_cases()
    outcomes = run_cases(http, cases)                # one request each, classified
    bad_inputs(gate, outcomes, health_failures)      # records the criteria

A JSON case passes ("rejected") when the answer is a 4xx whose JSON body has "error" and names the
field at fault ("field", or null where no single field is: unknown routes, bodies that are not
JSON objects count as field "body"). A Gradio case passes when the call is refused with a 4xx or the
event stream ends in `event: error` whose message names the field (the app's own checks say
"field: message"); Gradio's own protocol checks (wrong arity, a value not among a Radio's choices)
name the value rather than the parameter and are matched on that. A few Gradio inputs are coerced
by Gradio itself before the app sees them (a list sent to a Textbox becomes its str()): those are
counted as "coerced" and must only not crash anything.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import httpx

from validation.gate import Gate

HUGE = 1_200_000  # > 1 MB: over MAX_BODY_BYTES (256 KiB by default) -> 413
HTML_PAYLOAD = "<script>alert('cai-xss')</script><img src=x onerror=alert('cai-xss')>"
UNSET = object()


@dataclass
class Case:
    method: str
    path: str
    what: str  # category: empty, huge, binary, invalid_utf8, control, wrong_type, missing, range, unknown, path, ...
    body: Any = UNSET  # dict/list/... (sent as JSON), bytes (sent raw), UNSET (no body)
    field: str | None = None  # the field the error must name (None: null or any)
    gradio: bool = False  # a Gradio API call (/gradio_api/call/<api>)
    expect: str | None = None  # Gradio: substring the error message must contain
    coerced: bool = False  # Gradio coerces this input itself: it must only not crash
    headers: dict[str, str] = dc_field(default_factory=dict)

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    def label(self) -> str:
        if isinstance(self.body, bytes):
            shown = f"<{len(self.body)} raw bytes>"
        elif self.body is UNSET:
            shown = "<no body>"
        else:
            shown = json.dumps(self.body)
            shown = shown if len(shown) <= 80 else f"{shown[:60]}…<{len(shown)} chars>"
        return f"{self.route} [{self.what}] {shown}"


@dataclass
class Outcome:
    case: Case
    verdict: str  # rejected | coerced | accepted | server_error | no_answer | bad_error_body | wrong_field
    status: int | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.verdict in ("rejected", "coerced")


# ---------------------------------------------------------------------------------------------
# The cases


def _body_level(method: str, path: str, seed: int) -> list[Case]:
    """Bodies that are not a JSON object at all: every POST route gets them."""
    rnd = random.Random(seed)
    binary = bytes(rnd.randrange(256) for _ in range(4096))
    return [
        Case(method, path, "invalid_json", b"{", "body"),
        Case(method, path, "invalid_json", b'{"a": 1,}', "body"),
        Case(method, path, "invalid_utf8", b'{"text": "\xff\xfe\xc3\x28"}', "body"),
        Case(method, path, "invalid_utf8", b"\xff\xfe\x00\x00", "body"),
        Case(method, path, "binary", binary, "body"),
        Case(method, path, "control", b'{"text": "a\x00\x01\x1b[31mb"}', "body"),  # raw control chars: not JSON
        Case(method, path, "wrong_type", [], "body"),
        Case(method, path, "wrong_type", "a string", "body"),
        Case(method, path, "wrong_type", 42, "body"),
        Case(method, path, "wrong_type", None, "body"),
        Case(method, path, "nested", ("[" * 50_000 + "]" * 50_000).encode(), "body"),
        Case(method, path, "huge", b'{"text": "' + b"a" * HUGE + b'"}', "body"),
        Case(method, path, "huge", b'{"text": "' + b"a" * HUGE + b'"}', "body", headers={"x-chunked": "1"}),
    ]


MODEL_NAMES = [
    ("unknown", "no-such-model-xyz"),
    ("unknown", "org/no-such-model"),
    ("unknown", "a" * 300),
    ("path", "../../../../etc"),
    ("path", "tiny/../../../../etc/passwd"),
    ("path", "/etc"),
    ("path", "/etc/passwd"),
    ("path", "/app/models/../../etc"),
    ("path", "/app/demo/checkpoints/../../../root"),
    ("path", "~/.ssh"),
    ("path", "..\\..\\windows"),
    ("path", "C:\\Windows\\System32"),
    ("path", "file:///etc/passwd"),
    ("path", "https://evil.example/model"),
    ("path", "/proc/self/environ"),
    ("html", HTML_PAYLOAD),
]


def json_cases() -> list[Case]:
    """What schemathesis cannot make (it fuzzes each field's types, ranges, enums and missing or
    unknown fields from the OpenAPI document: validation/resilience/contract.py): bodies that are not
    JSON objects, not JSON or not UTF-8, nested too deep, too large or chunked; model names that are
    paths out of the allowed folders or HTML; ids in paths that traverse, are huge or hold control
    characters; unknown routes."""
    cases: list[Case] = []
    post_routes = ["/api/models/load", "/api/evaluate", "/api/generate", "/api/train", "/api/impact"]
    for i, path in enumerate(post_routes):
        cases += _body_level("POST", path, seed=i)
    for what, v in MODEL_NAMES:
        cases.append(Case("POST", "/api/models/load", what, {"model": v}, "model"))

    # Ids in paths: unknown, traversal, huge, control characters.
    for what, raw in [
        ("unknown", "j-000000000000"),
        ("path", "..%2F..%2Fetc%2Fpasswd"),
        ("path", "%2e%2e"),
        ("huge", "j" * 5000),
        ("control", "%00%1b"),
        ("html", "%3Cscript%3E"),
    ]:
        cases.append(Case("GET", f"/api/train/{raw}", what, UNSET, None))
        cases.append(Case("POST", f"/api/train/{raw}/cancel", what, UNSET, None))
    for what, raw in [
        ("unknown", "20990101-000000-smoke-abcd"),
        ("path", "..%2F..%2Fetc"),
        ("path", "%2e%2e%2fmodels"),
        ("huge", "r" * 5000),
        ("control", "%00"),
        ("html", "%3Cimg%20src%3Dx%3E"),
    ]:
        cases.append(Case("GET", f"/api/runs/{raw}", what, UNSET, None))
        cases.append(Case("GET", f"/api/runs/{raw}/impact.json", what, UNSET, None))
    cases.append(Case("GET", "/api/runs/20990101-000000-smoke-abcd/impact.exe", "unknown", UNSET, None))
    # Unknown routes and methods under /api.
    cases += [
        Case("GET", "/api/evaluate", "unknown", UNSET, None),
        Case("DELETE", "/api/runs", "unknown", UNSET, None),
        Case("POST", "/api/nope", "unknown", {"a": 1}, None),
        Case("PUT", "/api/train", "unknown", {"preset": "smoke"}, None),
    ]
    return cases


def gradio_cases(max_text_chars: int = 4000) -> list[Case]:
    """The same through the Gradio API (/gradio_api/call/<api_name>): {"data": [...]}."""
    g = "/gradio_api/call/"
    c: list[Case] = []

    def call(api: str, what: str, data: Any, expect: str | None, field: str | None = None, **kw) -> None:
        body = data if isinstance(data, bytes) else ({"data": data} if data is not UNSET else {})
        c.append(Case("POST", g + api, what, body, field, gradio=True, expect=expect, **kw))

    # evaluate(text, mode)
    call("evaluate", "missing", [None, "rules"], "text:", "text")
    call("evaluate", "empty", ["", "rules"], "text:", "text")
    call("evaluate", "empty", ["  \n ", "rules"], "text:", "text")
    call("evaluate", "control", ["a\u0000b", "rules"], "text:", "text")
    call("evaluate", "control", ["\u001b[2J\u0007", "rules"], "text:", "text")
    call("evaluate", "huge", ["x" * (max_text_chars + 1), "rules"], "text:", "text")
    call("evaluate", "unknown", ["hello", "bogus"], "bogus", "mode")
    call("evaluate", "wrong_type", ["hello", 5], "5", "mode")
    call("evaluate", "missing", ["hello"], None)
    call("evaluate", "wrong_type", "not a list", None)
    call("evaluate", "missing", UNSET, None)
    call("evaluate", "invalid_json", b"{", None)
    call("evaluate", "invalid_utf8", b'{"data": ["\xff\xfe", "rules"]}', None)
    call("evaluate", "huge", b'{"data": ["' + b"a" * HUGE + b'", "rules"]}', None)
    call("evaluate", "wrong_type", [["a"], "rules"], None, coerced=True)
    call("evaluate", "wrong_type", [{"a": 1}, "rules"], None, coerced=True)
    # load_model(name)
    call("load_model", "missing", [None], "model:", "model")
    call("load_model", "empty", [""], "model:", "model")
    for what, name in MODEL_NAMES:
        call("load_model", what, [name], "model:", "model")
    # generate(prompt, temperature, max_new_tokens)
    call("generate", "missing", [None, 0.7, 8], "prompt:", "prompt")
    call("generate", "empty", ["", 0.7, 8], "prompt:", "prompt")
    call("generate", "control", ["a\u0000", 0.7, 8], "prompt:", "prompt")
    call("generate", "range", ["hi", 99, 8], "99", "temperature")
    call("generate", "range", ["hi", -1, 8], "-1", "temperature")
    call("generate", "range", ["hi", 0.7, 100000], "100000", "max_new_tokens")
    call("generate", "range", ["hi", 0.7, 0], "0", "max_new_tokens")
    call("generate", "wrong_type", ["hi", "hot", 8], None, "temperature")
    call("generate", "missing", ["hi"], None)
    # start_training(preset)
    call("start_training", "unknown", ["bogus"], "bogus", "preset")
    call("start_training", "missing", [None], "preset", "preset")
    call("start_training", "wrong_type", [3], "3", "preset")
    # run_impact(limit)
    call("run_impact", "range", [-5], "-5", "limit")
    call("run_impact", "range", [100000], "100000", "limit")
    return c


# ---------------------------------------------------------------------------------------------
# Running and judging


def _send(http: httpx.Client, case: Case, timeout: float) -> httpx.Response:
    headers = dict(case.headers)
    chunked = headers.pop("x-chunked", None)
    if case.body is UNSET:
        return http.request(case.method, case.path, headers=headers, timeout=timeout)
    if isinstance(case.body, bytes):
        content: Any = case.body
    else:
        content = json.dumps(case.body, allow_nan=True).encode()
    if chunked:
        data = content

        def gen():
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        content = gen()
    headers.setdefault("content-type", "application/json")
    return http.request(case.method, case.path, content=content, headers=headers, timeout=timeout)


def _error_body(r: httpx.Response) -> dict | None:
    try:
        body = r.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def judge_json(case: Case, r: httpx.Response) -> Outcome:
    status = r.status_code
    if status >= 500:
        return Outcome(case, "server_error", status, r.text[:200])
    if status < 400:
        return Outcome(case, "accepted", status, f"bad input accepted: {r.text[:160]}")
    body = _error_body(r)
    if body is None or "error" not in body or "field" not in body or not body.get("message"):
        return Outcome(case, "bad_error_body", status, f"not a JSON error naming the field: {r.text[:160]}")
    # 422 errors of pydantic (Gradio's own routes) put the field in detail[].loc; ours in "field".
    if case.field is not None and body.get("field") != case.field:
        return Outcome(case, "wrong_field", status, f"field {body.get('field')!r}, expected {case.field!r}")
    return Outcome(case, "rejected", status, f"{body.get('error')}: {str(body.get('message'))[:100]}")


def _sse_result(http: httpx.Client, api_path: str, event_id: str, timeout: float) -> tuple[str, str]:
    """(event, data) of the last event of a Gradio call's stream (complete | error | ...)."""
    event, data = "", ""
    with http.stream("GET", f"{api_path}/{event_id}", timeout=timeout) as s:
        if s.status_code != 200:
            return f"http {s.status_code}", s.read().decode(errors="replace")[:200]
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
                if event in ("complete", "error"):
                    break
    return event, data


def judge_gradio(http: httpx.Client, case: Case, r: httpx.Response, timeout: float) -> Outcome:
    status = r.status_code
    if status >= 500:
        return Outcome(case, "server_error", status, r.text[:200])
    if 400 <= status < 500:
        # Gradio's request validation (pydantic: {"detail": [...]}) or our guard ({"error", "field"}).
        ok = _error_body(r) is not None
        return Outcome(case, "rejected" if ok else "bad_error_body", status, r.text[:160])
    body = _error_body(r) or {}
    event_id = body.get("event_id")
    if not event_id:
        return Outcome(case, "accepted", status, f"no event id: {r.text[:160]}")
    event, data = _sse_result(http, case.path, event_id, timeout)
    if event.startswith("http 5"):
        return Outcome(case, "server_error", status, f"{event}: {data}")
    if event == "complete":
        if case.coerced:
            return Outcome(case, "coerced", status, "coerced by Gradio into a valid value, answered")
        return Outcome(case, "accepted", status, f"bad input accepted: {data[:160]}")
    if event != "error":
        return Outcome(case, "no_answer", status, f"stream ended without complete/error ({event!r})")
    try:
        message = (json.loads(data) or {}).get("error") if data else None
    except ValueError:
        message = data
    if case.expect is None:
        return Outcome(case, "rejected", status, f"error event: {str(message)[:120]}")
    if not message or case.expect not in str(message):
        return Outcome(case, "wrong_field", status, f"error message {str(message)[:120]!r} does not name {case.expect!r}")
    return Outcome(case, "rejected", status, f"error event: {str(message)[:120]}")


def run_case(http: httpx.Client, case: Case, timeout: float = 60) -> Outcome:
    try:
        r = _send(http, case, timeout)
        if case.gradio:
            return judge_gradio(http, case, r, timeout)
        return judge_json(case, r)
    except httpx.HTTPError as exc:
        return Outcome(case, "no_answer", None, f"{type(exc).__name__}: {exc}")


def health_ok(http: httpx.Client) -> bool:
    try:
        r = http.get("/health", timeout=10)
        return r.status_code == 200 and (_error_body(r) or {}).get("status") == "healthy"
    except httpx.HTTPError:
        return False


def run_cases(http: httpx.Client, cases: list[Case], timeout: float = 60) -> tuple[list[Outcome], list[str]]:
    """Run every case; GET /health after each route's batch. (outcomes, batches after which /health failed)."""
    outcomes: list[Outcome] = []
    down: list[str] = []
    last_route = None
    for case in cases:
        batch = case.path if case.gradio else case.route
        if last_route is not None and batch != last_route and not health_ok(http):
            down.append(last_route)
        last_route = batch
        outcomes.append(run_case(http, case, timeout))
    if last_route is not None and not health_ok(http):
        down.append(last_route)
    return outcomes, down


def summary(outcomes: list[Outcome]) -> dict:
    by_verdict = Counter(o.verdict for o in outcomes)
    by_what = Counter(o.case.what for o in outcomes)
    routes = sorted({o.case.path if o.case.gradio else o.case.route for o in outcomes})
    statuses = Counter(str(o.status) for o in outcomes)
    return {
        "tried": len(outcomes),
        "verdicts": dict(by_verdict),
        "categories": dict(by_what),
        "statuses": dict(statuses),
        "routes": routes,
    }


def bad_inputs(gate: Gate, outcomes: list[Outcome], down: list[str], label: str = "") -> dict:
    """Record the battery's criteria: inputs tried, 5xx/crashes, share rejected properly, server up."""
    s = summary(outcomes)
    crashed = [o for o in outcomes if o.verdict in ("server_error", "no_answer")]
    bad = [o for o in outcomes if not o.ok]
    pfx = f"{label}: " if label else ""
    gate.measure(
        "resilience.bad_inputs_tried",
        len(outcomes),
        detail=f"{pfx}{len(s['routes'])} routes; categories {s['categories']}",
        soft=True,
    )
    gate.measure(
        "resilience.bad_input_5xx",
        len(crashed),
        detail=pfx
        + ("; ".join(f"{o.case.label()} -> {o.status} {o.detail[:80]}" for o in crashed[:4]) or f"statuses {s['statuses']}"),
        soft=True,
    )
    share = round(100.0 * (len(outcomes) - len(bad)) / len(outcomes), 2) if outcomes else None
    gate.measure(
        "resilience.bad_input_rejected",
        share,
        detail=pfx
        + ("; ".join(f"{o.verdict}: {o.case.label()} -> {o.status} {o.detail[:80]}" for o in bad[:4]) or f"{s['verdicts']}"),
        soft=True,
    )
    gate.measure(
        "resilience.server_down",
        len(down),
        detail=pfx
        + (
            f"/health failed after: {', '.join(down[:5])}"
            if down
            else f"GET /health 200 after each of {len(s['routes'])} route batches"
        ),
        soft=True,
    )
    gate.raise_pending()
    return s
