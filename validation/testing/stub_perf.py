"""Subjects for the perf gate's sensitivity tests (tests/test_gate_perf.py): the framework's StubApp
(validation/testing/stub_app.py) plus what the load touches, and perf faults:

    slow_generate=<s>   POST /api/generate answers after <s> seconds
    error_every=<n>     every n-th POST /api/evaluate answers 500
    leak_mb=<mb>        /metrics reports process_resident_memory_bytes growing by <mb> per request served
    busy_training       POST /api/train always answers 409 busy (a run is active)
    volume_used_gb=<gb> /metrics reports cai_checkpoint_volume_bytes{kind="used"} of <gb> GB (0: not exported)

A `LeakyProcess` is a real child process whose RSS grows (for the psutil sampler).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

from validation.testing.stub_app import StubApp

BASE_RSS = 250 * 2**20


class PerfStub(StubApp):
    def __init__(
        self,
        faults: set[str] | None = None,
        *,
        slow_generate: float = 0.0,
        error_every: int = 0,
        leak_mb: float = 0.0,
        volume_used_gb: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__(faults, **kw)
        self.slow_generate = slow_generate
        self.error_every = error_every
        self.leak_mb = leak_mb
        self.volume_used_gb = volume_used_gb
        self.served = 0
        self.evaluations = 0
        self.cpu_s = 0.0
        self._lock = threading.Lock()

    def route(self, method: str, path: str, payload: dict | None) -> tuple[int, Any, str]:
        js = "application/json"
        with self._lock:
            self.served += 1
            self.cpu_s += 0.002
        if path == "/metrics":
            rss = BASE_RSS + int(self.served * self.leak_mb * 2**20)
            text = (
                "# TYPE process_resident_memory_bytes gauge\n"
                f"process_resident_memory_bytes {float(rss)}\n"
                "# TYPE process_cpu_seconds_total counter\n"
                f"process_cpu_seconds_total {self.cpu_s}\n"
            )
            if self.volume_used_gb:
                text += "# TYPE cai_checkpoint_volume_bytes gauge\n"
                text += f'cai_checkpoint_volume_bytes{{kind="used"}} {self.volume_used_gb * 1e9}\n'
            return 200, text, "text/plain; version=0.0.4"
        if path == "/api/models" and method == "GET":
            return 200, {"registry": [{"name": "tiny", "description": "stub"}], "current": {"name": "tiny"}, "state": "ready"}, js
        if path == "/api/train" and method == "GET":
            return 200, {"active": None, "last": None}, js
        if path == "/api/train" and method == "POST" and "busy_training" in self.faults:
            return 409, {"error": "busy", "field": "preset", "message": "training job j-0 is running", "job_id": "j-0"}, js
        if path == "/api/train/j-0" and method == "GET" and "busy_training" in self.faults:
            return 200, {"job_id": "j-0", "state": "running", "step": 1, "total_steps": 9}, js
        if path == "/api/generate" and method == "POST" and self.slow_generate:
            time.sleep(self.slow_generate)
        if path == "/api/evaluate" and method == "POST" and self.error_every:
            with self._lock:
                self.evaluations += 1
                n = self.evaluations
            if n % self.error_every == 0:
                return 500, {"error": "internal", "field": None, "message": "stub failure"}, js
        return super().route(method, path, payload)


LEAKER = """
import sys, time
chunks = []
step = int(sys.argv[1]) * 2**20
for _ in range(int(sys.argv[2])):
    chunks.append(bytearray(step))
    for i in range(0, step, 4096):
        chunks[-1][i] = 1
    time.sleep(float(sys.argv[3]))
time.sleep(30)
"""


class LeakyProcess:
    """A child process that allocates `mb` MB every `every` seconds, `times` times (real RSS growth)."""

    def __init__(self, mb: int = 40, times: int = 8, every: float = 0.1) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LEAKER, str(mb), str(times), str(every)])
        self.pid = self.proc.pid

    def __enter__(self) -> LeakyProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.kill()
        self.proc.wait(5)
