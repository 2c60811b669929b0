"""N replicas of the app sharing one Postgres behind HAProxy: what `fly scale count N` or a platform's
autoscaled instances run, on this machine.

    with fleet(2, say=print) as f: f.edge.url, f.replicas[0].base_url, f.database.url
    python -m validation.targets.replicas [--replicas N] -- CMD ...   # {url}, {http_url}, {build} filled in

Each replica is a process target with its own checkpoint folder (a platform gives each machine its own
volume), `DATABASE_URL` of a throwaway cluster from the host's PostgreSQL, and `REPLICA_ID` r1..rN.
The balancer is the edge proxy (validation/targets/proxy.py): TLS, the UI sticky by a cookie, `/api/`
round-robin with no affinity. The command form runs CMD against it, as the url target reaches a
platform (`--target url --base-url {url}`), and stops everything after.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from validation.targets import postgres
from validation.targets.base import HEALTH_TIMEOUT_S, Say, _noop
from validation.targets.image import git_build_id
from validation.targets.process import ProcessTarget
from validation.targets.proxy import Cert, Edge, _trusting, command, edge_cert, edge_proxy, run_against

DEFAULT_REPLICAS = 2


@dataclass
class Fleet:
    edge: Edge  # the balancer: .url (https here; plain http for compose's), .http_url (redirects)
    replicas: list  # each: .base_url, .kill(), .dead(), .save_log(path) (ProcessTarget, compose.Replica)
    database: postgres.Cluster  # .url; .stop() and .start() for an outage (or compose.Database)
    cert: Cert | None  # the balancer's certificate: trust it (SSL_CERT_FILE) to reach `url`


@contextlib.contextmanager
def fleet(n: int = DEFAULT_REPLICAS, env: dict[str, str] | None = None,
          health_timeout: float = HEALTH_TIMEOUT_S, say: Say = _noop) -> Iterator[Fleet]:
    """Postgres, `n` replicas and the balancer; yields once /health answers through it, with
    SSL_CERT_FILE trusting the balancer. Everything is stopped and removed at the end."""
    with postgres.cluster() as database, tempfile.TemporaryDirectory(prefix="cai-gate-fleet-") as tmp, \
            contextlib.ExitStack() as stack:
        say(f"replicas: {n} processes on {database.url}")
        replicas = [
            stack.enter_context(ProcessTarget(
                env={**(env or {}), "DATABASE_URL": database.url, "REPLICA_ID": f"r{i}"},
                health_timeout=health_timeout, log_path=Path(tmp) / f"r{i}.log",
                say=lambda m, i=i: say(f"r{i}: {m}"),
            ))
            for i in range(1, n + 1)
        ]
        cert = edge_cert(Path(tmp))
        edge = stack.enter_context(edge_proxy([r.base_url.removeprefix("http://") for r in replicas], cert, say=say))
        stack.enter_context(_trusting(cert.cert))
        yield Fleet(edge, replicas, database, cert)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.targets.replicas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=DEFAULT_REPLICAS, help="how many (default %(default)s)")
    parser.add_argument("--health-timeout", type=float, default=HEALTH_TIMEOUT_S)
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command; {url}, {http_url}, {build} are filled in")
    args = parser.parse_args(argv)
    cmd = command(parser, args.cmd)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    build = git_build_id()
    say = lambda m: print(f"[replicas] {m}", flush=True)  # noqa: E731
    with fleet(args.replicas, {"BUILD_ID": build}, args.health_timeout, say) as f:
        return run_against(cmd, f.edge, build, f.cert, say)


if __name__ == "__main__":
    sys.exit(main())
