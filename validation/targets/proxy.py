"""HAProxy in front of the app, as a platform's edge proxy is: the url target's path, run on this machine.

    with edge_proxy("127.0.0.1:7861", say=print) as url: ...          # http://127.0.0.1:<free port>
    python -m validation.targets.proxy [--behind process] -- CMD ...   # {url} and {build} in CMD are filled in

The command form starts the app as a process target with BUILD_ID set to the git sha, puts Debian's
HAProxy in front of it, runs CMD (the gate on `--target url --base-url {url} --expect-build {build}`, as
the deploy workflow runs it against a platform), stops both and exits with CMD's status. The gate then
sees only what it sees of a deployment: answers through a proxy hop, no logs, no process.
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
from pathlib import Path

from validation.targets.base import HEALTH_TIMEOUT_S, Say, TargetError, _noop, free_port, wait_http
from validation.targets.image import git_build_id
from validation.targets.process import ProcessTarget

# Timeouts as generous as a platform's: an impact request answers three held-out sets (up to 15 min).
CONFIG = """\
global
    maxconn 256
defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client 900s
    timeout server 900s
frontend edge
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server app {backend}
"""


def haproxy_binary() -> str:
    found = shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin:" + os.environ.get("PATH", ""))
    if not found:
        raise TargetError("haproxy not found: the url target's local proxy needs it (apt-get install haproxy)")
    return found


@contextlib.contextmanager
def edge_proxy(backend: str, health_timeout: float = 30, say: Say = _noop) -> Iterator[str]:
    """HAProxy on a free loopback port forwarding to `backend` (host:port); yields its URL once the
    app's /health answers through it."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cai-gate-proxy-") as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        cfg.write_text(CONFIG.format(port=port, backend=backend))
        check = subprocess.run([haproxy_binary(), "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode:
            raise TargetError(f"haproxy refused its config: {check.stderr.strip()}")
        proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            alive = lambda: None if proc.poll() is None else f"haproxy exited: {proc.stderr.read()[-500:]}"  # noqa: E731
            wait_http(f"{url}/health", health_timeout, alive=alive)
            say(f"haproxy {url} -> {backend}")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.targets.proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--health-timeout", type=float, default=HEALTH_TIMEOUT_S)
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command; {url} and {build} are filled in")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command after --")
    build = git_build_id()
    say = lambda m: print(f"[proxy] {m}", flush=True)  # noqa: E731
    with (ProcessTarget(env={"BUILD_ID": build}, health_timeout=args.health_timeout, say=say) as app,
          edge_proxy(app.base_url.removeprefix("http://"), say=say) as url):
        filled = [a.replace("{url}", url).replace("{build}", build) for a in cmd]
        say(" ".join(filled))
        return subprocess.run(filled).returncode


if __name__ == "__main__":
    sys.exit(main())
