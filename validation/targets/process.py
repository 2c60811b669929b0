"""`python -m app` as a child process on a free port, with its own checkpoint and log folders."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from validation.gate import CLOCK
from validation.targets.base import HEALTH_TIMEOUT_S, REPO, Say, Target, TargetError, _make_data_dirs, _noop, free_port, wait_http
from validation.targets.resources import DiskUsage, dir_bytes, rss_bytes


class ProcessTarget(Target):
    kind = "process"

    def __init__(
        self,
        *,
        python: str = sys.executable,
        cwd: Path = REPO,
        port: int | None = None,
        env: dict[str, str] | None = None,
        health_timeout: float = HEALTH_TIMEOUT_S,
        log_path: Path | None = None,
        say: Say = _noop,
    ) -> None:
        super().__init__()
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._cwd, self._env, self.log_path, self._full_env = cwd, env or {}, log_path, {}
        self.health_timeout, self._say = health_timeout, say
        self._data_root = self._log_fh = self.popen = None
        # GATE_APP_MODULE: the faults session's wrapper (validation/faults/inject.py) instead of the app
        self.cmd = [python, "-m", os.environ.get("GATE_APP_MODULE") or "app"]

    def start(self) -> ProcessTarget:
        """Spawn the app with its own data folders; returns once GET /health answers 200."""
        self._data_root, self.checkpoint_dir, self.log_dir = _make_data_dirs("cai-gate-proc-")
        self.log_path = self.log_path or (self._data_root / "app.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._full_env = {
            **os.environ,
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "CHECKPOINT_DIR": str(self.checkpoint_dir),
            "LOG_DIR": str(self.log_dir),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
            **self._env,
        }
        self._full_env.pop("PORT", None)
        self._say(f"process target: {' '.join(self.cmd)} on {self.base_url} (log: {self.log_path})")
        self._log_fh = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started_at = time.monotonic()
        self._spawn()
        self._register()
        try:
            self.health_seconds = wait_http(f"{self.base_url}/health", self.health_timeout, alive=self.dead)
        except TargetError as exc:
            raise TargetError(f"process target did not become healthy: {exc}", self.log_tail()) from None
        self._say(f"process target healthy after {self.health_seconds:.1f} s (pid {self.pid})")
        return self

    def _spawn(self) -> None:
        self.popen = subprocess.Popen(
            self.cmd,
            cwd=self._cwd,
            env=self._full_env,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def _terminate(self, timeout: float) -> None:
        with CLOCK.spent("app"):  # the app's own shutdown, not the gate's time
            self._stop_process(timeout)

    def _stop_process(self, timeout: float) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)

    def restart(self, timeout: float = 10) -> None:
        """Stop the app (SIGTERM, SIGKILL after `timeout`) and start it again: same command, port,
        folders and log (appended). Returns once the new process runs; it is not waited on."""
        self._terminate(timeout)
        self._spawn()

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine: no shutdown at all. Returns once it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(30)

    def dead(self) -> str | None:
        code = self.popen.poll()
        return None if code is None else f"`python -m app` exited with code {code}"

    @property
    def process(self):
        import psutil

        return psutil.Process(self.pid)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def resource_sample(self, cpu: bool = False) -> dict[str, Any] | None:
        import psutil

        try:
            procs = [self.process, *self.process.children(recursive=True)]
            sample: dict[str, Any] = {
                "memory_bytes": rss_bytes(procs),
                "source": "psutil RSS (process + children)",
            }
            if cpu:
                for p in procs:
                    p.cpu_percent(None)
                time.sleep(0.5)
                sample["cpu_percent"] = sum(p.cpu_percent(None) for p in procs)
            return sample
        except psutil.Error:
            return None

    def run_python(self, script: Path, args: list[str], timeout: float = 300) -> tuple[int, str]:
        done = subprocess.run([self.cmd[0], str(script), *args], capture_output=True, text=True, timeout=timeout,
                              env=self._full_env or None)
        return done.returncode, done.stdout + done.stderr

    @property
    def model_cache_dir(self) -> Path:
        """The folder the app builds and loads its registry models from (MODEL_CACHE_DIR, app/config.py)."""
        from app.config import ENV_VARS, Settings

        # the field's default, read from the class's field table (a pydantic model class has no attribute)
        raw = (self._full_env.get(ENV_VARS["model_cache_dir"], "").strip()
               or str(Settings.model_fields["model_cache_dir"].default))
        return self._cwd / Path(raw).expanduser()

    def disk_usage(self) -> DiskUsage:
        """The checkpoint and log folders + the model cache the app loaded from (`du` each). Not counted:
        the Python environment and the judge model inside it (installed packages, not the app's data)."""
        cache = self.model_cache_dir
        parts = {"checkpoints": dir_bytes(self.checkpoint_dir), "logs": dir_bytes(self.log_dir),
                 f"model cache {cache}": dir_bytes(cache)}
        return DiskUsage(
            f"du of {self.checkpoint_dir}, {self.log_dir} and {cache} (not counted: the Python environment, "
            "which holds the judge model)",
            parts,
        )

    def stop(self, timeout: float = 10) -> None:
        if self._stopped:
            return
        super().stop()
        if self.popen is not None:
            self._terminate(timeout)
        if self._log_fh is not None:
            self._log_fh.close()
        if self._data_root is not None:
            shutil.rmtree(self._data_root, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pid": self.pid, "cmd": " ".join(self.cmd)}
