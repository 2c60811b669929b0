"""Training runs in Postgres (DATABASE_URL): the state that several replicas share.

Each run's metadata is a row of ``runs`` (a jsonb document, the same one ``metadata.json`` holds on
the volume) and each of its files a row of ``run_files``: the trained LoRA adapter's files (about
20 MB for SmolLM2 at r=16: well inside a bytea, and written in one transaction before the run is
marked succeeded), ``traces.json`` and the impact downloads. Each write is one transaction. The adapter is also written
to the local checkpoint folder, where the engine loads it from; a replica that has no copy of a run's
adapter writes one from the database before loading it (`localize`). What the fleet serves (the
base model, and the trained run it is compared with) is a row of ``fleet``: each replica follows it.

Training jobs still run in the replica that started them, and the database makes them the fleet's:
* one job at a time across the replicas: an advisory lock (JOB_LOCK) that the running replica holds
  on a connection of its own, which Postgres frees if that replica dies;
* the running replica writes the job's state into its run every second (a heartbeat), so any replica
  answers for it, and reads back a cancel asked on another replica;
* a run whose heartbeat is older than LEASE_S (its replica was killed, ran out of memory, or was
  stopped by the platform) is marked ``interrupted`` by the next replica that reads the runs.

At start-up the schema is created if it is missing (`MIGRATION`, safe to rerun), and runs this
replica (REPLICA_ID, default the host name) left active are marked ``interrupted``.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from app import metrics
from app.errors import ApiError
from app.runs import ACTIVE, RUN_ID, TMP_PREFIX, RunStore, now

CONNECT_TIMEOUT_S = 5
LEASE_S = 15  # a job whose replica wrote no heartbeat for this long is interrupted (it beats every second)
JOB_LOCK = 0x6361692D6A6F62  # the advisory lock that lets one replica at a time run a training job
MIGRATION_LOCK = JOB_LOCK + 1  # replicas starting at once migrate one after the other
MIGRATION = """
CREATE TABLE IF NOT EXISTS runs (
    run_id text PRIMARY KEY,
    meta jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS run_files (
    run_id text NOT NULL REFERENCES runs ON DELETE CASCADE,
    name text NOT NULL,
    content bytea NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS fleet (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


class DatabaseError(ApiError):
    """DATABASE_URL names a database the app cannot use (unreachable, refused, read-only): at start
    the app stops with it; while serving, the request gets it as a JSON 503."""

    def __init__(self, message: str):
        super().__init__(503, "DATABASE_URL", message, error="database_unavailable")


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PostgresRunStore(RunStore):
    shared = True

    def __init__(self, root: Path, url: str, replica: str):
        super().__init__(root)
        self.url, self.replica = url, replica
        self._claim: psycopg.Connection | None = None  # holds JOB_LOCK while this replica runs a job

    def _connect(self) -> psycopg.Connection:
        t0 = time.perf_counter()
        try:
            # UTF8 whatever the database's encoding: on a SQL_ASCII one (initdb in the C locale)
            # psycopg would hand text back as bytes.
            conn = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=False,
                                   client_encoding="UTF8")
        except psycopg.Error as exc:
            raise DatabaseError(f"DATABASE_URL={redacted(self.url)}: cannot connect: {_first_line(exc)}") from None
        metrics.DATABASE_CONNECT.observe(time.perf_counter() - t0)
        return conn

    @contextlib.contextmanager
    def _session(self) -> Iterator[psycopg.Connection]:
        """One transaction on a connection of its own. The database lost in the middle (a restart, a
        failover) is a DatabaseError too, a JSON 503, never a 500."""
        try:
            with self._connect() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._gone(exc) from None

    def _gone(self, exc: Exception) -> DatabaseError:
        return DatabaseError(f"DATABASE_URL={redacted(self.url)}: the database went away: {_first_line(exc)}")

    def open(self) -> list[str]:
        """Create the schema if missing and mark the runs this replica left active as interrupted.
        Raises DatabaseError, naming DATABASE_URL, when the database cannot be used."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._session() as conn:
            if conn.execute("SHOW transaction_read_only").fetchone()[0] == "on":
                raise DatabaseError(f"DATABASE_URL={redacted(self.url)}: the database is read-only")
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute(MIGRATION)
            except psycopg.Error as exc:
                raise DatabaseError(f"DATABASE_URL={redacted(self.url)}: cannot create the schema: "
                                    f"{_first_line(exc)}") from None
            rows = conn.execute(
                "UPDATE runs SET meta = meta || %s WHERE meta->>'state' = ANY(%s) AND meta->>'replica' = %s "
                "RETURNING run_id",
                (Jsonb({"state": "interrupted", "updated_at": now(),
                        "error": "the server stopped while this run was active"}), list(ACTIVE), self.replica),
            ).fetchall()
        return [r[0] for r in rows]

    def claim(self) -> None:
        """JOB_LOCK on a connection kept for the job: Postgres frees it when the job ends or the
        replica dies. Raises 409 busy, naming the other replica's job, when another holds it."""
        conn = self._connect()
        conn.autocommit = True
        try:
            locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (JOB_LOCK,)).fetchone()[0]
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            conn.close()
            raise self._gone(exc) from None
        if not locked:
            conn.close()
            job_id = (self.active_job() or {}).get("job_id")
            raise ApiError(409, "preset", f"training job {job_id} is running on another replica; one job at a time",
                           error="busy", extra={"job_id": job_id})
        self._claim = conn

    def release(self) -> None:
        if self._claim is not None:
            self._claim.close()
            self._claim = None

    def heartbeat(self, run_id: str, job: dict) -> bool:
        row = self._one("UPDATE runs SET meta = meta || %s WHERE run_id = %s RETURNING meta->'cancel_requested'",
                        (Jsonb({"job": job, "heartbeat_at": now()}), run_id))
        return bool(row and row[0])

    def find_job(self, job_id: str) -> dict | None:
        self._expire()
        row = self._one("SELECT meta FROM runs WHERE meta->>'job_id' = %s", (job_id,))
        if row is None:
            return None
        meta = row[0]
        return {**(meta.get("job") or {}), "job_id": job_id, "run_id": meta["run_id"], "state": meta["state"],
                "error": meta.get("error")}

    def active_job(self) -> dict | None:
        self._expire()
        row = self._one("SELECT meta->>'job_id' FROM runs WHERE meta->>'state' = ANY(%s) "
                        "ORDER BY meta->>'created_at' DESC LIMIT 1", (list(ACTIVE),))
        return self.find_job(row[0]) if row and row[0] else None

    def last_job(self) -> dict | None:
        self._expire()
        row = self._one("SELECT meta->>'job_id' FROM runs WHERE meta->>'job_id' IS NOT NULL "
                        "ORDER BY meta->>'created_at' DESC LIMIT 1", ())
        return self.find_job(row[0]) if row and row[0] else None

    def request_cancel(self, job_id: str) -> dict | None:
        self._one("UPDATE runs SET meta = meta || %s WHERE meta->>'job_id' = %s AND meta->>'state' = ANY(%s)",
                  (Jsonb({"cancel_requested": True, "state": "cancelling", "updated_at": now()}), job_id,
                   ["queued", "running"]))
        return self.find_job(job_id)

    def _expire(self) -> None:
        """Mark interrupted the active runs whose replica stopped beating (killed, out of memory,
        stopped by the platform): nothing stays running forever."""
        self._one("UPDATE runs SET meta = meta || %s WHERE meta->>'state' = ANY(%s) "
                  "AND (meta->>'heartbeat_at')::timestamptz < now() - make_interval(secs => %s)",
                  (Jsonb({"state": "interrupted", "updated_at": now(),
                          "error": f"the replica running it stopped (no heartbeat for {LEASE_S} s)"}),
                   list(ACTIVE), LEASE_S))

    def lease_age(self) -> float:
        try:
            row = self._one("SELECT extract(epoch FROM now() - max((meta->>'heartbeat_at')::timestamptz)) "
                            "FROM runs WHERE meta->>'state' = ANY(%s)", (list(ACTIVE),))
        except DatabaseError:
            return float("nan")
        return float(row[0] or 0)

    def _one(self, sql: str, params: tuple) -> tuple | None:
        with self._session() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchone() if cur.description else None

    def problem(self) -> str | None:
        try:
            with self._session() as conn:
                conn.execute("SELECT 1")
        except DatabaseError as exc:
            return exc.message
        return None

    def create(self, run_id: str, **meta) -> dict:
        self.path(run_id)  # validates the id
        data = {"run_id": run_id, "state": "queued", "created_at": now(), "updated_at": now(),
                "finished_at": None, "base": None, "trained": None, "error": None, "metrics": {},
                "replica": self.replica, "heartbeat_at": now(), **meta}
        with self._session() as conn:
            conn.execute("INSERT INTO runs (run_id, meta) VALUES (%s, %s)", (run_id, Jsonb(data)))
        return data

    def update(self, run_id: str, **fields) -> dict:
        self.path(run_id)
        with self._session() as conn:
            row = conn.execute(
                "INSERT INTO runs (run_id, meta) VALUES (%s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET meta = runs.meta || EXCLUDED.meta RETURNING meta",
                (run_id, Jsonb({"run_id": run_id, **fields, "updated_at": now()}))).fetchone()
        return row[0]

    def get(self, run_id: str) -> dict:
        self.path(run_id)
        self._expire()
        with self._session() as conn:
            row = conn.execute("SELECT meta FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        if row is None:
            raise ApiError(404, "run_id", f"no run {run_id!r}", error="not_found")
        return row[0]

    def list(self) -> list[dict]:
        self._expire()
        with self._session() as conn:
            rows = conn.execute("SELECT meta FROM runs ORDER BY meta->>'created_at' DESC").fetchall()
        return [r[0] for r in rows]

    def save_adapter(self, run_id: str, kind: str, peft_model, *, base_model: str) -> Path:
        """The adapter on the local volume (as RunStore saves it) and its files in the database."""
        self.path(run_id).mkdir(parents=True, exist_ok=True)
        dest = super().save_adapter(run_id, kind, peft_model, base_model=base_model)
        with self._session() as conn:
            for f in sorted(dest.iterdir()):
                self._put(conn, run_id, f"{kind}/{f.name}", f.read_bytes())
        return dest

    def localize(self, name: str) -> str:
        """A run's adapter folder (`.../<run_id>/<kind>`, as any replica names it: each has its own
        volume) is written here from the database when this replica has no copy; the local path."""
        given = Path(name).expanduser()
        if len(given.parts) < 2 or not RUN_ID.match(given.parent.name):
            return name
        run_id, kind = given.parent.name, given.name
        folder = self.path(run_id) / kind
        if folder.exists():  # this replica's own copy: no need to read the adapter from the database
            return str(folder)
        with self._session() as conn:
            rows = conn.execute("SELECT name, content FROM run_files WHERE run_id = %s AND name LIKE %s",
                                (run_id, f"{kind}/%")).fetchall()
        if not rows:
            return name
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{kind}-", dir=folder.parent))
        try:
            for name_, content in rows:
                (tmp / name_.split("/", 1)[1]).write_bytes(content)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(folder)

    def serving(self) -> dict | None:
        row = self._one("SELECT value FROM fleet WHERE key = 'serving'", ())
        return row[0] if row else None

    def set_serving(self, model: str, run_id: str | None, folder: str | None) -> None:
        self._one("INSERT INTO fleet (key, value) VALUES ('serving', %s) "
                  "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                  (Jsonb({"model": model, "run_id": run_id, "folder": folder, "replica": self.replica}),))

    def write_file(self, run_id: str, name: str, text: str) -> Path:
        with self._session() as conn:
            self._put(conn, run_id, name, text.encode("utf-8"))
        return self.path(run_id) / name

    def read_file(self, run_id: str, name: str) -> str:
        self.path(run_id)
        with self._session() as conn:
            row = conn.execute("SELECT content FROM run_files WHERE run_id = %s AND name = %s",
                               (run_id, name)).fetchone()
        if row is None:
            raise ApiError(404, "run_id", f"run {run_id!r} has no {name} yet", error="not_found")
        return bytes(row[0]).decode("utf-8")

    @staticmethod
    def _put(conn: psycopg.Connection, run_id: str, name: str, content: bytes) -> None:
        conn.execute("INSERT INTO run_files (run_id, name, content) VALUES (%s, %s, %s) "
                     "ON CONFLICT (run_id, name) DO UPDATE SET content = EXCLUDED.content",
                     (run_id, name, content))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
