"""Prometheus metrics (prometheus-client's default registry, which also carries the process
collector: process_resident_memory_bytes, process_cpu_seconds_total)."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("cai_http_requests_total", "HTTP requests served", ["method", "route", "status"])
LATENCY = Histogram("cai_http_request_duration_seconds", "HTTP request latency", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
MODEL_LOAD_SECONDS = Gauge("cai_model_load_seconds", "Seconds the last model load took")
MODEL_LOADED = Gauge("cai_model_loaded", "1 for the loaded model", ["model"])
JOB_STATES = ("idle", "queued", "running", "cancelling", "cancelled", "succeeded", "failed")
TRAINING_STATE = Gauge("cai_training_job_state", "1 for the current training job state", ["state"])
TRAINING_RUNS = Counter("cai_training_runs_total", "Training runs by final state", ["state"])


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
