"""HAProxy in front of the app, as a platform's edge proxy is: the url target's path, run on this machine.

    with edge_proxy("127.0.0.1:7861", cert) as edge: edge.url, edge.http_url   # https and plain-http ports
    python -m validation.targets.proxy -- CMD ...   # {url}, {http_url} and {build} in CMD are filled in

Like Fly's or Cloud Run's edge, the proxy terminates TLS (a certificate made for this run, its own
CA, which the command trusts through SSL_CERT_FILE), sends Strict-Transport-Security, and redirects
plain http to https. The command form starts the app as a process target with BUILD_ID set to the
git sha, puts the proxy in front of it, runs CMD (the gate on `--target url --base-url {url}
--http-url {http_url} --expect-build {build}`, as the deploy workflow runs it against a platform),
stops both and exits with CMD's status. The gate then sees only what it sees of a deployment:
answers through a proxy hop, no logs, no process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from validation.targets.base import HEALTH_TIMEOUT_S, Say, TargetError, _noop, free_port, wait_http
from validation.targets.image import git_build_id
from validation.targets.process import ProcessTarget

# Timeouts as generous as a platform's: an impact request answers three held-out sets (up to 15 min).
# Several replicas: the UI sticks to one by a cookie (Gradio's queue session lives in one process);
# /api/ goes round-robin with no affinity, as a platform's balancer does by default. A replica is
# taken out after two failed /health checks a second apart, and a request to a dead one is retried
# (a dead container's address does not refuse, it times out: connecting gives up after 1 s).
# The compose `scale` profile's balancer has the same routing (compose_config).
DEFAULTS = """\
global
    maxconn 256
defaults
    mode http
    option forwardfor
    option redispatch
    retries 2
    timeout connect 1s
    timeout client 900s
    timeout server 900s
    timeout check 3s
"""
ROUTING = """\
    acl api path_beg /api/
    use_backend api if api
    default_backend ui
"""
EDGE = """\
frontend edge
    bind 127.0.0.1:{port} ssl crt {pem}
    http-response set-header Strict-Transport-Security "max-age=63072000"
{routing}frontend plain
    bind 127.0.0.1:{http_port}
    http-request redirect location https://127.0.0.1:{port}%[capture.req.uri] code 301
"""
AFFINITY_COOKIE = "CAI_REPLICA"
CHECK = "check inter 1s fall 2 rise 1"
COMPOSE_PORT = 8080  # the compose balancer's port in its container
COMPOSE_CONFIG = Path(__file__).resolve().parents[2] / "compose" / "balancer" / "haproxy.cfg"


def _backends(backends: list[str], server_options: str = "") -> str:
    ui = "\n".join(f"    server r{i} {b} {CHECK} cookie r{i}{server_options}" for i, b in enumerate(backends, 1))
    api = "\n".join(f"    server r{i} {b} {CHECK}{server_options}" for i, b in enumerate(backends, 1))
    return (f"backend ui\n    option httpchk GET /health\n    cookie {AFFINITY_COOKIE} insert indirect nocache httponly\n"
            f"{ui}\nbackend api\n    option httpchk GET /health\n{api}\n")


def _config(port: int, http_port: int, pem: Path, backends: list[str]) -> str:
    return DEFAULTS + EDGE.format(port=port, http_port=http_port, pem=pem, routing=ROUTING) + _backends(backends)


def compose_config(replicas: int = 2) -> str:
    """compose/balancer/haproxy.cfg: the same routing in front of compose's replica1..N, plain http
    on COMPOSE_PORT, names resolved by Docker's DNS once the replicas exist."""
    return ("# Written by validation/targets/proxy.py (compose_config): the routing the replicas gate uses.\n"
            + DEFAULTS + "resolvers docker\n    nameserver dns 127.0.0.11:53\n"
            + f"frontend web\n    bind :{COMPOSE_PORT}\n{ROUTING}"
            + _backends([f"replica{i}:7860" for i in range(1, replicas + 1)], " resolvers docker init-addr libc,none"))


@dataclass(frozen=True)
class Edge:
    url: str  # https://127.0.0.1:PORT
    http_url: str  # the plain-http address, which redirects to `url`


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


def make_cert(folder: Path, days: int, names: str = "IP:127.0.0.1,DNS:localhost", name: str = "cert") -> Cert:
    """A self-signed EC certificate valid `days` days (>= 1) for `names` (subjectAltName)."""
    if not shutil.which("openssl"):
        raise RuntimeError("the openssl CLI is needed to make test certificates (Debian: apt-get install openssl)")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", "/CN=cai-gate test",
         "-addext", f"subjectAltName={names}"],
        check=True, capture_output=True, timeout=30,
    )
    return Cert(cert, key)


def edge_cert(folder: Path) -> Cert:
    """The proxy's certificate for 127.0.0.1 (its own CA), and beside it the PEM HAProxy serves (cert, key)."""
    made = make_cert(folder, days=30, names="IP:127.0.0.1", name="edge")
    made.cert.with_name("edge-bundle.pem").write_text(made.cert.read_text() + made.key.read_text())
    return made


def haproxy_binary() -> str:
    found = shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", ""))
    if not found:
        raise TargetError("haproxy not found: the url target's local proxy needs it (apt-get install haproxy)")
    return found


@contextlib.contextmanager
def edge_proxy(backends: str | list[str], cert: Cert, health_timeout: float = 30, say: Say = _noop) -> Iterator[Edge]:
    """HAProxy on free loopback ports forwarding to `backends` (host:port, one or a list) over TLS with
    `cert` (from edge_cert); yields once the app's /health answers through it."""
    backends = [backends] if isinstance(backends, str) else backends
    port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="cai-gate-proxy-") as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        pem = cert.cert.with_name("edge-bundle.pem")
        cfg.write_text(_config(port, http_port, pem, backends))
        check = subprocess.run([haproxy_binary(), "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode:
            raise TargetError(f"haproxy refused its config: {check.stderr.strip()}")
        proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        edge = Edge(f"https://127.0.0.1:{port}", f"http://127.0.0.1:{http_port}/")
        try:
            alive = lambda: None if proc.poll() is None else f"haproxy exited: {proc.stderr.read()[-500:]}"  # noqa: E731
            with _trusting(cert.cert):
                wait_http(f"{edge.url}/health", health_timeout, alive=alive)
            say(f"haproxy {edge.url} (and {edge.http_url}, redirecting) -> {', '.join(backends)}")
            yield edge
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def _trusting(cert: Path) -> Iterator[None]:
    """httpx (and the gate's TLS checks) trust `cert` while the block runs: SSL_CERT_FILE."""
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(cert)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.targets.proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--health-timeout", type=float, default=HEALTH_TIMEOUT_S)
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command; {url} and {build} are filled in")
    args = parser.parse_args(argv)
    cmd = command(parser, args.cmd)
    build = git_build_id()
    say = lambda m: print(f"[proxy] {m}", flush=True)  # noqa: E731
    with (tempfile.TemporaryDirectory(prefix="cai-gate-edge-cert-") as certs,
          ProcessTarget(env={"BUILD_ID": build}, health_timeout=args.health_timeout, say=say) as app):
        cert = edge_cert(Path(certs))
        with edge_proxy(app.base_url.removeprefix("http://"), cert, say=say) as edge:
            return run_against(cmd, edge, build, cert, say)


def command(parser: argparse.ArgumentParser, rest: list[str]) -> list[str]:
    """The command after `--` (argparse.REMAINDER); a usage error when there is none."""
    cmd = rest[1:] if rest[:1] == ["--"] else rest
    if not cmd:
        parser.error("no command after --")
    return cmd


def run_against(cmd: list[str], edge: Edge, build: str, cert: Cert | None, say: Say) -> int:
    """Run `cmd` with {url}, {http_url} and {build} filled in, trusting `cert` (None: plain http);
    its exit status."""
    filled = [a.replace("{url}", edge.url).replace("{http_url}", edge.http_url).replace("{build}", build) for a in cmd]
    trust = {"SSL_CERT_FILE": str(cert.cert)} if cert else {}
    say(" ".join(filled) + (f"  (SSL_CERT_FILE={cert.cert})" if cert else ""))
    return subprocess.run(filled, env={**os.environ, **trust}).returncode


if __name__ == "__main__":
    sys.exit(main())
