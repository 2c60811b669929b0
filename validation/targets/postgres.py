"""A throwaway PostgreSQL cluster from the host's Debian binaries (no image, no service):
`initdb` into a temporary folder, `pg_ctl start` on a free port, one database, removed at the end.
Run as root it runs them as the `postgres` user, since PostgreSQL refuses to run as root. The
replicas session stops and starts it to test an outage."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

DATABASE = "cai"


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A cluster in `folder`, run as `as_user`: its URL, and a stop and start for outage tests."""

    def __init__(self, bin_: Path, folder: Path, port: int, as_user: list[str]):
        self.bin, self.folder, self.port, self.as_user = bin_, folder, port, as_user
        self.data = folder / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"

    def _run(self, *cmd: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bin / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            log = self.folder / "server.log"
            log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout[-1000:]}{done.stderr[-1000:]}{log[-1000:]}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are closed, as when a managed database restarts."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A running cluster with database DATABASE (its postgresql:// URL is `.url`), removed at the end."""
    bin_ = binaries()
    if bin_ is None:
        raise RuntimeError("no PostgreSQL binaries (initdb): apt-get install postgresql")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="cai-pg-"))
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
    c = Cluster(bin_, folder, _free_port(), as_user)
    try:
        c._run("initdb", "-D", str(c.data), "-A", "trust", "-U", "postgres", "--no-sync", "--encoding=UTF8",
               "--locale=C.UTF-8")
        c.start()
        c._run("createdb", "-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres", DATABASE)
        yield c
    finally:
        if c.running():
            subprocess.run([*as_user, str(bin_ / "pg_ctl"), "-D", str(c.data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
