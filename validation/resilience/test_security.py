"""Security: basic auth on every route but /health, rate limit (429 + Retry-After), non-root,
no secrets in the image's env/history/layers, trust_remote_code never on, localhost by default."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from validation import api
from validation.resilience import security_checks
from validation.resilience.conftest import model_cache_dir

pytestmark = pytest.mark.resilience

RATE = 40
REMOTE_DIR_CONTAINER = "/app/models/gate-remote-code"
MARKER_CONTAINER = "/tmp/gate-remote-code-ran"


@pytest.fixture(scope="module")
def secured(apps, target_kind, request, auth):
    """An app with BASIC_AUTH and RATE_LIMIT_PER_MINUTE on (and, on process, no GRADIO_SERVER_NAME).
    On the url target: the deployed app itself, when --basic-auth says it has auth on."""
    if target_kind == "url":
        creds = auth
        if not creds:
            pytest.skip("url target without --basic-auth: the deployed app's auth cannot be checked")
        return {"app": request.getfixturevalue("target"), "auth": creds, "remote": None, "url": True}
    creds = ("gate", secrets.token_urlsafe(12))
    env = {"BASIC_AUTH": f"{creds[0]}:{creds[1]}", "RATE_LIMIT_PER_MINUTE": str(RATE)}
    remote = None
    if target_kind == "process":
        remote = Path(tempfile.mkdtemp(prefix="cai-res-remote-"))
        env["MODEL_DIRS"] = os.pathsep.join([str(model_cache_dir()), str(remote)])
        env["GRADIO_SERVER_NAME"] = ""  # the default applies
    app = apps.app(env)
    if remote is not None:
        apps.extra_dirs.append(remote)
    return {"app": app, "auth": creds, "remote": remote, "url": False}


def test_basic_auth(gate, secured, say):
    from validation.resilience.apps import wait_ready

    app, auth = secured["app"], secured["auth"]
    wait_ready(app.base_url, auth=auth)
    with api.Client(base_url=app.base_url, timeout=30) as c:
        res = security_checks.auth_routes(gate, c, auth)
    say(f"basic auth: {res['routes']} routes, open {len(res['open'])}, failing with credentials {len(res['failing'])}")


def test_trust_remote_code(gate, secured, target_kind):
    hits = security_checks.trust_remote_code_source()
    if secured["url"]:
        gate.measure("security.trust_remote_code", hits, detail="grep app/ only (url target: no runtime check)")
        return
    app, auth = secured["app"], secured["auth"]
    marker = f"/tmp/gate-remote-code-ran-{secrets.token_hex(4)}"
    if target_kind == "container":
        marker = MARKER_CONTAINER
        app.put_files(REMOTE_DIR_CONTAINER, security_checks.remote_code_files(marker))
        folder = REMOTE_DIR_CONTAINER

        def ran() -> bool:
            return app.exec(["test", "-e", marker])[0] == 0
    else:
        folder = str(secured["remote"] / "model")
        Path(folder).mkdir()
        for name, text in security_checks.remote_code_files(marker).items():
            (Path(folder) / name).write_text(text)

        def ran() -> bool:
            return Path(marker).exists()

    with api.Client(base_url=app.base_url, auth=auth, timeout=120) as c:
        hits += security_checks.remote_code_runtime(c, folder, ran)
    gate.measure(
        "security.trust_remote_code",
        hits,
        detail=f"grep app/ for trust_remote_code (all explicit False); runtime: load {folder} with auto_map code",
    )


def test_rate_limit(gate, secured):
    if secured["url"]:
        gate.skip("security.rate_limited", "url target: the deployed app's rate limit setting is unknown")
    app, auth = secured["app"], secured["auth"]
    with api.Client(base_url=app.base_url, timeout=30) as c:
        security_checks.rate_limit(gate, c, RATE, auth=auth)


def test_default_bind(gate, secured, target_kind):
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_SERVER_NAME", "PORT", "GRADIO_SERVER_PORT")}
    out = subprocess.run(
        [sys.executable, "-c", "from app import config; print(config.load().host)"],
        cwd=security_checks.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    host = out.stdout.strip() or f"(error: {out.stderr.strip()[-120:]})"
    detail = "app.config default with GRADIO_SERVER_NAME unset"
    if target_kind == "process":
        import psutil

        proc = psutil.Process(secured["app"].pid)
        addrs = sorted(
            {
                c.laddr.ip
                for p in [proc, *proc.children(recursive=True)]
                for c in p.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            }
        )
        detail += f"; the running app (GRADIO_SERVER_NAME empty) listens on {addrs}"
        if addrs and addrs != ["127.0.0.1"]:
            host = ",".join(addrs)
    else:
        detail += "; the image sets GRADIO_SERVER_NAME=0.0.0.0 on purpose (its port is published)"
    gate.measure("security.default_bind", host, detail=detail)


def test_container_not_root(gate, secured, target_kind):
    if target_kind != "container":
        gate.skip("security.root_processes", f"no container on the {target_kind} target")
    top = secured["app"].container.top(ps_args="-o uid,pid,comm")
    titles = top["Titles"]
    rows = [dict(zip(titles, p)) for p in top["Processes"]]
    # tini, the container's init, stays root: it only forwards signals and reaps (run.sh, which it
    # starts, hands the volumes to `app` and drops to it before the server starts).
    init = str(secured["app"].container_attrs["State"]["Pid"])  # the init's pid as `top` shows it (the host's)
    root = [f"pid {r.get('PID')} {r.get('COMMAND')}" for r in rows
            if str(r.get("UID")) in ("0", "root") and not (str(r.get("PID")) == init and r.get("COMMAND") == "tini")]
    gate.measure(
        "security.root_processes",
        root,
        detail=f"{len(rows)} processes: " + ", ".join(f"{r.get('COMMAND')} uid {r.get('UID')}" for r in rows),
    )


class _GenStream:
    """A file-like object over docker's save() chunks (tarfile stream mode reads it once)."""

    def __init__(self, chunks):
        self.chunks, self.buf = iter(chunks), b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


def test_no_secrets_in_image(gate, target_kind, image_tag, say):
    if target_kind != "container":
        gate.skip("security.secrets_found", f"no image on the {target_kind} target")
    from validation.targets import docker_client

    client = docker_client(600)
    img = client.images.get(image_tag)
    env = img.attrs.get("Config", {}).get("Env") or []
    history = [h.get("CreatedBy", "") for h in img.history()]
    layers = security_checks.scan_layers(_GenStream(img.save(chunk_size=1 << 20)))
    say(f"secret scan: {layers['layers']} layers, {layers['files']} files, {layers['read']} read")
    security_checks.secrets(gate, env, history, layers, f"image {image_tag}")
