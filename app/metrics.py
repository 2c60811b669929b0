"""Prometheus metrics (prometheus-client's default registry, which also carries the process
collector: process_resident_memory_bytes, process_cpu_seconds_total)."""

import os
import shutil
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
for _state in ("succeeded", "failed", "cancelled"):  # present from the start, so rate() and alerts see 0
    TRAINING_RUNS.labels(state=_state)
