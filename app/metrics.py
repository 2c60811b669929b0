"""Prometheus metrics (prometheus-client's default registry, which also carries the process
collector: process_resident_memory_bytes, process_cpu_seconds_total)."""

import os
import shutil
import threading
import time
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("cai_http_requests_total", "HTTP requests served", ["method", "route", "status"])
LATENCY = Histogram("cai_http_request_duration_seconds", "HTTP request latency", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
MODEL_LOAD_SECONDS = Gauge("cai_model_load_seconds", "Seconds the last model load took")
MODEL_LOADED = Gauge("cai_model_loaded", "1 for the loaded model", ["model"])
JOB_STATES = ("idle", "queued", "running", "cancelling", "cancelled", "succeeded", "failed")
TRAINING_STATE = Gauge("cai_training_job_state", "1 for the current training job state", ["state"])
TRAINING_RUNS = Counter("cai_training_runs_total", "Training runs by final state", ["state"])
# Read at each scrape (watch_volume): the checkpoint volume filling up is an alert (monitoring/alerts.yml).
VOLUME_BYTES = Gauge("cai_checkpoint_volume_bytes", "Bytes of the checkpoint volume's file system", ["kind"])
RUNS_STORED = Gauge("cai_training_runs_stored", "Training run folders on the checkpoint volume")
# CPU in use as a share of what the process may use (the plan's < 80 %) needs the cores: the
# process's affinity, capped by a cgroup v2 CPU quota (a Fly/Railway machine's vCPUs).
CPU_CORES = Gauge("cai_cpu_cores", "CPU cores this process may use (affinity, capped by the cgroup quota)")
# The runs' store, asked at each scrape (watch_store): the checkpoint volume, or DATABASE_URL's database
# (app/pgstore.py), where each query opens its own connection (no pool: psycopg_pool is not in the
# package index the image builds from), so connecting is timed.
STORE_UP = Gauge("cai_runs_store_up", "1 while the runs' store answers (the volume, or DATABASE_URL's database)")
DATABASE_CONNECT = Histogram("cai_database_connect_seconds", "Connecting to DATABASE_URL's database (one a query)",
                             buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
LEASE_AGE = Gauge("cai_training_lease_age_seconds",
                  "Seconds since the fleet's running training job last beat (0 when none); past the lease it is interrupted")

# Users (the plan's monitoring section). Sessions are counted, never identified: Gradio's session
# hash is a key in memory only (SessionTracker), never a label; no label holds an IP or a prompt.
SESSION_IDLE_S = 300  # a session with no activity for this long has ended
SESSIONS_ACTIVE = Gauge("cai_sessions_active", "Gradio sessions with activity in the last 5 minutes")
SESSIONS_STARTED = Counter("cai_sessions_started_total", "Gradio sessions started (a page load, or activity after idling)")
SESSION_DURATION = Histogram("cai_session_duration_seconds",
                             "Gradio session length, observed when the tab closes or the session idles out",
                             buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400))
EVALUATIONS = Counter("cai_evaluations_total", "Evaluations asked for (UI and POST /api/evaluate)", ["mode"])
GENERATIONS = Counter("cai_generations_total", "Generations asked for (UI and POST /api/generate)")
TRAINING_STARTED = Counter("cai_training_runs_started_total", "Training runs started", ["preset"])
USER_METRICS = (SESSIONS_ACTIVE, SESSIONS_STARTED, SESSION_DURATION, EVALUATIONS, GENERATIONS, TRAINING_STARTED)

# Serving, measured in the decoder (app/generation.py), so every path counts: UI, HTTP, compare,
# impact, a training job's SL-CAI data. `priority`: interactive (users, impact) or background (training).
PRIORITIES = ("interactive", "background")
QUEUE_DEPTH = Gauge("cai_generation_queue_depth", "Generation requests waiting for a place in a batch", ["priority"])
BATCH_SIZE = Gauge("cai_generation_batch_size", "Requests being decoded together", ["priority"])
GENERATED_TOKENS = Counter("cai_generated_tokens_total", "Tokens generated", ["priority"])
# Buckets: a step of SmolLM2-135M on 2 cores is ~0.05-0.2 s (1 to 32 rows); a prefill of a long
# prompt or a wait behind other work takes seconds.
FIRST_TOKEN_LATENCY = Histogram("cai_time_to_first_token_seconds", "Request queued to its first token", ["priority"],
                                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30))
OUTPUT_TOKEN_LATENCY = Histogram("cai_time_per_output_token_seconds",
                                  "A finished request's mean time per token after its first", ["priority"],
                                  buckets=(0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2))
SERVING_METRICS = (QUEUE_DEPTH, BATCH_SIZE, GENERATED_TOKENS, FIRST_TOKEN_LATENCY, OUTPUT_TOKEN_LATENCY)


def family(metric) -> str:
    """The family name /metrics shows a metric under (a counter's without its _total)."""
    return metric.describe()[0].name


def counted(metric) -> str:
    """The sample that counts: a counter's <family>_total, a histogram's <family>_count, a gauge itself."""
    return family(metric) + {"counter": "_total", "histogram": "_count"}.get(metric.describe()[0].type, "")


def declare(metric, label: str, values) -> None:
    """Children present from the start, at 0, so rate() and alerts see the first event."""
    for value in values:
        metric.labels(**{label: value})


def priority(background: bool) -> str:
    return PRIORITIES[1] if background else PRIORITIES[0]


class SessionTracker:
    """Gradio sessions by an opaque key: when each started and was last active. A session ends when
    its tab closes (end) or after SESSION_IDLE_S without activity; its duration is observed then."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._sessions: dict[str, tuple[float, float]] = {}  # key -> (started, last active)
        self._lock = threading.Lock()

    def seen(self, key: str | None) -> None:
        """Activity of session `key` (a page load, an action); an unknown key starts a session."""
        if not key:
            return
        now = self.clock()
        with self._lock:
            started, _ = self._sessions.get(key, (None, None))
            if started is None:
                self._end_idle(now)  # keeps the table as small as the sessions active
                SESSIONS_STARTED.inc()
                started = now
            self._sessions[key] = (started, now)

    def end(self, key: str | None) -> None:
        with self._lock:
            started, _ = self._sessions.pop(key, (None, None))
        if started is not None:
            SESSION_DURATION.observe(self.clock() - started)

    def active(self) -> int:
        """Sessions active within SESSION_IDLE_S (read at each scrape, which also ends idle ones)."""
        with self._lock:
            self._end_idle(self.clock())
            return len(self._sessions)

    def _end_idle(self, now: float) -> None:
        idle = [k for k, (_, last) in self._sessions.items() if now - last > SESSION_IDLE_S]
        for key in idle:
            started, last = self._sessions.pop(key)
            SESSION_DURATION.observe(last - started)


SESSIONS = SessionTracker()


def cpu_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> float:
    cores = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cores


def watch_volume(runs_dir: Path) -> None:
    """Report the file system holding `runs_dir` (used, free, total bytes) and its run folders."""
    def usage(kind: str) -> float:
        try:
            return float(getattr(shutil.disk_usage(runs_dir), kind))
        except OSError:
            return float("nan")

    def runs() -> float:
        try:
            return float(sum(1 for e in os.scandir(runs_dir) if e.is_dir()))
        except OSError:
            return float("nan")

    for kind in ("used", "free", "total"):
        VOLUME_BYTES.labels(kind=kind).set_function(lambda kind=kind: usage(kind))
    RUNS_STORED.set_function(runs)


def watch_store(store) -> None:
    """Ask the runs' store at each scrape whether it answers, and the age of the running job's lease."""
    STORE_UP.set_function(lambda: 0.0 if store.problem() else 1.0)
    LEASE_AGE.set_function(store.lease_age)


def set_training_state(state: str) -> None:
    for s in JOB_STATES:
        TRAINING_STATE.labels(state=s).set(1 if s == state else 0)


def set_model(name: str | None, load_seconds: float | None = None) -> None:
    MODEL_LOADED.clear()
    if name:
        MODEL_LOADED.labels(model=name).set(1)
    if load_seconds is not None:
        MODEL_LOAD_SECONDS.set(load_seconds)


set_training_state("idle")
CPU_CORES.set_function(cpu_cores)
SESSIONS_ACTIVE.set_function(SESSIONS.active)
declare(TRAINING_RUNS, "state", ("succeeded", "failed", "cancelled"))
for _metric in (GENERATED_TOKENS, FIRST_TOKEN_LATENCY, OUTPUT_TOKEN_LATENCY):
    declare(_metric, "priority", PRIORITIES)
