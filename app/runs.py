"""Training runs on the checkpoint volume: ``<CHECKPOINT_DIR>/runs/<run_id>/``.

Each run folder holds ``metadata.json`` and, once complete, ``trained/`` (the LoRA adapter; the
base model is named in its adapter_config.json and in the metadata) and ``traces.json``. Every
write is atomic (a temp file or folder in the same directory, then a rename), so a kill at any
moment leaves either the old state or the new one, never half a checkpoint. At start-up, runs
still marked active from a process that died are marked ``interrupted`` and temp leftovers removed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from app.errors import ApiError

RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z]+-[0-9a-f]{4}$")
ACTIVE = {"queued", "running", "cancelling"}
TMP_PREFIX = ".tmp-"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id(preset: str) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{preset}-{secrets.token_hex(2)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root) / "runs"
        self._lock = threading.Lock()

    def open(self) -> list[str]:
        """Create the folder, clean temp leftovers, mark runs a dead process left active as
        interrupted. Returns the ids it marked."""
        self.root.mkdir(parents=True, exist_ok=True)
        marked = []
        for run_dir in self.root.iterdir():
            if run_dir.name.startswith(TMP_PREFIX):
                shutil.rmtree(run_dir, ignore_errors=True) if run_dir.is_dir() else run_dir.unlink(missing_ok=True)
                continue
            if not run_dir.is_dir():
                continue
            for leftover in run_dir.glob(TMP_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
            meta = self._read(run_dir)
            if meta and meta.get("state") in ACTIVE:
                meta.update(state="interrupted", updated_at=now(),
                            error="the server stopped while this run was active")
                write_json_atomic(run_dir / "metadata.json", meta)
                marked.append(run_dir.name)
        return marked

    def path(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id or ""):
            raise ApiError(404, "run_id", f"no run {run_id!r}", error="not_found")
        return self.root / run_id

    @staticmethod
    def _read(run_dir: Path) -> dict | None:
        try:
            return json.loads((run_dir / "metadata.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def create(self, run_id: str, **meta) -> dict:
        run_dir = self.path(run_id)
        run_dir.mkdir(parents=True)
        data = {"run_id": run_id, "state": "queued", "created_at": now(), "updated_at": now(),
                "finished_at": None, "base": None, "trained": None, "error": None, "metrics": {}, **meta}
        write_json_atomic(run_dir / "metadata.json", data)
        return data

    def update(self, run_id: str, **fields) -> dict:
        with self._lock:
            run_dir = self.path(run_id)
            data = self._read(run_dir) or {"run_id": run_id}
            data.update(fields, updated_at=now())
            write_json_atomic(run_dir / "metadata.json", data)
            return data

    def get(self, run_id: str) -> dict:
        data = self._read(self.path(run_id))
        if data is None:
            raise ApiError(404, "run_id", f"no run {run_id!r}", error="not_found")
        return data

    def list(self) -> list[dict]:
        if not self.root.is_dir():
            return []
        runs = [m for d in self.root.iterdir() if RUN_ID.match(d.name) and (m := self._read(d))]
        return sorted(runs, key=lambda m: m.get("created_at", ""), reverse=True)

    def save_adapter(self, run_id: str, kind: str, peft_model, *, base_model: str) -> Path:
        """Save a LoRA adapter as ``<run>/<kind>/`` (complete or absent), naming its base model."""
        run_dir = self.path(run_id)
        dest = run_dir / kind
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{kind}-", dir=run_dir))
        try:
            for config in peft_model.peft_config.values():
                config.base_model_name_or_path = base_model
            peft_model.save_pretrained(tmp, save_embedding_layers=False)
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, dest)
            _fsync_dir(run_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    # One machine: jobs live in its process, which is the only one that can see or cancel them. A
    # store shared by replicas (app/pgstore.py) overrides these.
    shared = False

    def claim(self) -> None:
        """Take the right to run the one training job (the process's own lock already holds it)."""

    def release(self) -> None:
        """Give it back when the job ends."""

    def heartbeat(self, run_id: str, job: dict) -> bool:
        """Publish a running job's state; whether a cancel was asked elsewhere."""
        return False

    def find_job(self, job_id: str) -> dict | None:
        """A job another replica runs, as its last heartbeat left it."""
        return None

    def active_job(self) -> dict | None:
        """The job a replica runs now, if any."""
        return None

    def last_job(self) -> dict | None:
        """The job started last on any replica, whatever its state."""
        return None

    def request_cancel(self, job_id: str) -> dict | None:
        """Ask the replica running the job to cancel it; the job as it stands."""
        return None

    def problem(self) -> str | None:
        """Why the store cannot serve now (for /ready), or None. The volume's own faults (full,
        read-only) surface on the write that meets them."""
        return None

    def lease_age(self) -> float:
        """Seconds since the running job last beat: a job on the volume runs in this process, no lease."""
        return 0.0

    def localize(self, name: str) -> str:
        """What to load for POST /api/models/load's `model`: a run's adapter folder present here (on
        the volume it already is), or the name as given."""
        return name

    def serving(self) -> dict | None:
        """What the fleet serves ({"model", "run_id", "folder"}), as the last replica to change it
        left it; None on one machine, whose process alone decides."""
        return None

    def set_serving(self, model: str, run_id: str | None, folder: str | None) -> None:
        """Record what this replica now serves, for the others to follow."""

    def write_file(self, run_id: str, name: str, text: str) -> Path:
        path = self.path(run_id) / name
        write_text_atomic(path, text)
        return path

    def read_file(self, run_id: str, name: str) -> str:
        path = self.path(run_id) / name
        if not path.is_file():
            raise ApiError(404, "run_id", f"run {run_id!r} has no {name} yet", error="not_found")
        return path.read_text(encoding="utf-8")
