"""The security checks of the resilience gate: plain functions that measure, record through the gate
and fail naming the criterion. tests/test_gate_resilience.py runs them against broken subjects.

    auth_routes / rate_limit                basic auth on every route, 429 with Retry-After
    find_secrets / scan_layers / secrets    credentials in the image's env, history and layers
    trust_remote_code_source / remote_code_files / remote_code_runtime   a model's own code never runs
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from validation.gate import Gate

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Security: basic auth and rate limit

# Every kind of route the app serves (GET unless a body is given). /health must stay open.
AUTH_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/", None),
    ("GET", "/config", None),
    ("GET", "/gradio_api/info", None),
    ("GET", "/gradio_api/config", None),
    ("GET", "/theme.css", None),
    ("GET", "/favicon.ico", None),
    ("GET", "/gradio_api/file=/etc/hostname", None),
    ("GET", "/ready", None),
    ("GET", "/metrics", None),
    ("GET", "/api/models", None),
    ("GET", "/api/runs", None),
    ("GET", "/api/train", None),
    ("GET", "/api/docs", None),
    ("GET", "/api/openapi.json", None),
    ("GET", "/api/runs/20990101-000000-smoke-abcd", None),
    ("GET", "/api/train/j-000000000000", None),
    ("POST", "/api/evaluate", {"text": "Hello there", "mode": "rules"}),
    # a name no registry holds: refused with 404 once past auth, at once. Loading a real model could build
    # it first (tiny: about 20 s, more on a busy host), which timed out the check at random.
    ("POST", "/api/models/load", {"model": "no-such-model"}),
    ("POST", "/api/generate", {"prompt": "Hi", "max_new_tokens": 4, "compare": False}),
    ("POST", "/api/train", {"preset": "no-such-preset"}),  # refused with 422 once past auth: starts nothing
    ("POST", "/api/impact", {"limit": 1, "max_new_tokens": 4}),
    ("POST", "/gradio_api/call/evaluate", {"data": ["Hello there", "rules"]}),
    ("POST", "/gradio_api/queue/join", {"data": ["Hello there", "rules"], "fn_index": 0, "session_hash": "x"}),
    ("GET", "/gradio_api/queue/data?session_hash=x", None),
    ("GET", "//api/runs", None),
    ("GET", "/API/runs", None),
    ("GET", "/health/", None),
    ("GET", "/health/../api/runs", None),
]
# With credentials these must answer 2xx (the rest may give 4xx for their own reasons: 404, 422, 409).
MUST_SUCCEED = {
    "GET /",
    "GET /config",
    "GET /gradio_api/info",
    "GET /ready",
    "GET /metrics",
    "GET /api/models",
    "GET /api/runs",
    "GET /api/train",
    "GET /api/openapi.json",
    "POST /api/evaluate",
    "POST /gradio_api/call/evaluate",
}


def _req(client: httpx.Client, method: str, path: str, body: Any, auth=None) -> httpx.Response:
    kw: dict[str, Any] = {"timeout": 30}
    if auth is not None:
        kw["auth"] = auth
    if body is not None:
        kw["json"] = body
    # raw path: httpx would normalise "//" and ".."
    url = client.base_url.copy_with(raw_path=path.encode())
    with client.stream(method, url, **kw) as r:
        if "text/event-stream" not in r.headers.get("content-type", ""):
            r.read()
            return r
        # an event stream (Gradio's queue, answered when auth lets it through) never ends: its status
        # and headers are the answer
        return httpx.Response(r.status_code, headers=r.headers, content=b"(an event stream)", request=r.request)


def auth_routes(gate: Gate, client: httpx.Client, auth: tuple[str, str], routes=None) -> dict:
    """Without credentials every route but /health answers 401 (with WWW-Authenticate); wrong
    credentials too; /health answers 200 without any; with credentials the app's routes work."""
    routes = routes or AUTH_ROUTES
    open_routes, wrong_ok, failing = [], [], []
    r = _req(client, "GET", "/health", None)
    health_open = r.status_code == 200
    for method, path, body in routes:
        r = _req(client, method, path, body)
        if r.status_code != 401 or "basic" not in r.headers.get("www-authenticate", "").lower():
            open_routes.append(f"{method} {path} -> {r.status_code}")
        r = _req(client, method, path, body, auth=(auth[0], auth[1] + "-wrong"))
        if r.status_code != 401:
            wrong_ok.append(f"{method} {path} (wrong password) -> {r.status_code}")
        r = _req(client, method, path, body, auth=auth)
        if f"{method} {path}" in MUST_SUCCEED and not 200 <= r.status_code < 300:
            failing.append(f"{method} {path} -> {r.status_code} {r.text[:80]}")
        elif r.status_code == 401:
            failing.append(f"{method} {path} -> 401 with the right credentials")
    if not health_open:
        open_routes.append("(GET /health must answer 200 without credentials: it did not)")
    gate.measure(
        "security.auth_unprotected",
        open_routes + wrong_ok,
        detail=f"{len(routes)} routes without and with wrong credentials; GET /health open: {health_open}",
        soft=True,
    )
    gate.measure(
        "security.auth_refused_with_credentials",
        failing,
        detail=f"{len(routes)} routes with the right credentials",
        soft=True,
    )
    gate.raise_pending()
    return {"routes": len(routes), "open": open_routes + wrong_ok, "failing": failing}


def rate_limit(
    gate: Gate, client: httpx.Client, per_minute: int, auth=None, path: str = "/api/evaluate", extra: int = 20
) -> dict:
    """Send per_minute + extra requests at once: at least one 429 with a Retry-After (seconds, >= 1)
    and a JSON error; /health is never limited."""
    body = {"text": "Hello there", "mode": "rules"}
    statuses: list[int] = []
    first_429: httpx.Response | None = None
    health_limited = 0
    for i in range(per_minute + extra):
        r = _req(client, "POST", path, body, auth=auth)
        statuses.append(r.status_code)
        if r.status_code == 429 and first_429 is None:
            first_429 = r
        if i % 10 == 0 and _req(client, "GET", "/health", None, auth=auth).status_code == 429:
            health_limited += 1
    problems = []
    retry = None
    if first_429 is None:
        problems.append(f"no 429 in {len(statuses)} requests")
    else:
        retry = first_429.headers.get("retry-after")
        if not (retry or "").isdigit() or int(retry) < 1:
            problems.append(f"Retry-After {retry!r} is not a number of seconds >= 1")
        try:
            if first_429.json().get("error") != "rate_limited":
                problems.append(f"429 body {first_429.text[:80]}")
        except ValueError:
            problems.append(f"429 body not JSON: {first_429.text[:80]}")
    if health_limited:
        problems.append(f"GET /health answered 429 {health_limited} times")
    n429 = statuses.count(429)
    n_ok = sum(200 <= s < 300 for s in statuses)
    gate.measure(
        "security.rate_limited",
        not problems,
        detail=f"RATE_LIMIT_PER_MINUTE={per_minute}: {len(statuses)} POST {path} -> {n_ok} ok, {n429} x 429"
        + (f" (first at #{statuses.index(429) + 1}, Retry-After {retry} s)" if n429 else "")
        + (f"; problems: {'; '.join(problems)}" if problems else ""),
    )
    return {"sent": len(statuses), "ok": n_ok, "limited": n429, "retry_after": retry}


# ---------------------------------------------------------------------------------------------
# Security: secrets

# Values that look like credentials (not names: the value itself).
SECRET_VALUE = re.compile(
    r"AKIA[0-9A-Z]{16}"
    r"|ASIA[0-9A-Z]{16}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{40,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY( BLOCK)?-----"
    r"|(?:https?|ftp)://[^\s:/@]+:[^\s:/@]{3,}@[^\s/]+"  # credentials in a URL
)
# NAME=value pairs whose name says secret and whose value is not empty/placeholder.
SECRET_ASSIGNMENT = re.compile(
    r"\b([A-Z0-9_]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY|BASIC_AUTH|CREDENTIALS?)(?:_KEY|_VALUE)?)\b"
    r"\s*[=:]\s*['\"]?([^\s'\"]{4,})",
)
PLACEHOLDER = re.compile(r"^(\$\{?[A-Z_]+\}?|<[^>]*>|x+|\*+|changeme|example.*|none|null|false|true|0|1|)$", re.I)
SECRET_FILE_NAMES = re.compile(
    r"(^|/)(\.env(\.[a-z]+)?|\.netrc|\.pypirc|\.git-credentials|\.npmrc|id_(rsa|ed25519|ecdsa|dsa)|.*\.pem|.*\.key"
    r"|credentials(\.json)?|\.docker/config\.json|\.huggingface/token|token)$"
)
# Files that are expected to carry key-like material and are not ours (CA bundles).
ALLOWED_FILES = re.compile(r"(certifi/cacert\.pem|/etc/ssl/certs/|ca-certificates|/usr/share/)")


def find_secrets(text: str, source: str) -> list[str]:
    found = []
    for m in SECRET_VALUE.finditer(text):
        found.append(f"{source}: {m.group(0)[:12]}… (key-like value)")
    for m in SECRET_ASSIGNMENT.finditer(text):
        name, value = m.group(1), m.group(2)
        if not PLACEHOLDER.match(value):
            found.append(f"{source}: {name}=<{len(value)} chars>")
    return found


def scan_layers(tar_stream, max_file: int = 512 * 1024, content_skip=re.compile(r"site-packages/|^usr/")) -> dict:
    """Walk `docker save` output (a tar of layer tars): secret-looking file names anywhere, and
    key-like values inside small files outside site-packages and /usr. {"files", "layers", "found"}."""
    import tarfile

    found: list[str] = []
    n_files = n_layers = n_read = 0
    with tarfile.open(fileobj=tar_stream, mode="r|") as outer:
        for member in outer:
            if not member.isfile():
                continue
            f = outer.extractfile(member)
            if f is None:
                continue
            if member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                try:
                    inner = tarfile.open(fileobj=f, mode="r|")
                except tarfile.TarError:
                    continue
                n_layers += 1
                with inner:
                    for m in inner:
                        if not m.isfile():
                            continue
                        n_files += 1
                        name = m.name.lstrip("./")
                        base = name.rsplit("/", 1)[-1]
                        if base.startswith(".wh."):
                            continue
                        if SECRET_FILE_NAMES.search(name) and not ALLOWED_FILES.search(name) and "site-packages/" not in name:
                            found.append(f"layer file {name} (secret-looking name)")
                        if m.size <= max_file and not content_skip.search(name) and not ALLOWED_FILES.search(name):
                            data = inner.extractfile(m)
                            if data is None:
                                continue
                            raw = data.read()
                            if b"\x00" in raw[:1024]:
                                continue
                            n_read += 1
                            found += find_secrets(raw.decode("utf-8", "replace"), f"layer file {name}")
            elif member.name.endswith(".json"):
                found += find_secrets(f.read().decode("utf-8", "replace"), f"image {member.name}")
    return {"files": n_files, "layers": n_layers, "read": n_read, "found": found}


def secrets(gate: Gate, env: list[str], history: list[str], layers: dict | None, what: str) -> list[str]:
    found = []
    for line in env:
        found += find_secrets(line, "env")
    for i, line in enumerate(history):
        found += find_secrets(line, f"history step {i}")
    if layers:
        found += layers["found"]
    found = sorted(set(found))
    detail = f"{what}: {len(env)} env vars, {len(history)} history steps"
    if layers:
        detail += f", {layers['layers']} layers / {layers['files']} files ({layers['read']} read)"
    gate.measure("security.secrets_found", found, detail=detail)
    return found


def trust_remote_code_source(root: Path = REPO / "app") -> list[str]:
    """Source lines that could enable trust_remote_code (anything but an explicit False)."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "trust_remote_code" not in line or line.lstrip().startswith("#"):
                continue
            for m in re.finditer(r"trust_remote_code\s*[=:]\s*([^,)\s]+)", line):
                if m.group(1) != "False":
                    hits.append(f"{path.relative_to(root.parent)}:{n}: {line.strip()[:100]}")
            if "**" in line:
                hits.append(f"{path.relative_to(root.parent)}:{n}: kwargs could carry it: {line.strip()[:100]}")
    return hits


REMOTE_CODE_CONFIG = {
    "model_type": "cai_gate_remote",
    "architectures": ["GateRemoteModel"],
    "auto_map": {"AutoConfig": "gate_remote.GateRemoteConfig", "AutoModelForCausalLM": "gate_remote.GateRemoteModel"},
}


def remote_code_files(marker: str) -> dict[str, str]:
    """A model folder whose code, if ever executed, writes `marker`."""
    code = (
        "import pathlib\n"
        f"pathlib.Path({marker!r}).write_text('remote code ran')\n"
        "from transformers import PretrainedConfig, PreTrainedModel\n"
        "class GateRemoteConfig(PretrainedConfig):\n    model_type = 'cai_gate_remote'\n"
        "class GateRemoteModel(PreTrainedModel):\n    config_class = GateRemoteConfig\n"
    )
    return {
        "config.json": json.dumps(REMOTE_CODE_CONFIG),
        "gate_remote.py": code,
        "tokenizer_config.json": json.dumps({"auto_map": {"AutoTokenizer": ["gate_remote.Tok", None]}}),
    }


def remote_code_runtime(http: httpx.Client, folder: str, marker_exists) -> list[str]:
    """POST /api/models/load of a folder with custom code: refused (4xx), and the code never ran."""
    r = http.post("/api/models/load", json={"model": folder}, timeout=120)
    hits = []
    if r.status_code < 400 or r.status_code >= 500:
        hits.append(f"runtime: loading {folder} -> {r.status_code} {r.text[:100]}")
    time.sleep(0.2)
    if marker_exists():
        hits.append(f"runtime: the model folder's own code ran while loading {folder}")
    return hits
