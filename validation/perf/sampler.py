"""Memory, CPU and (container) network of the app, sampled from outside while the load runs (a thread
in the pytest process).

    sampler = Sampler.for_target(target)        # container: docker stats | process: psutil | url: /metrics
    with sampler:                               # samples every `interval` seconds until the block ends
        ...
    s = sampler.summary(t_from, t_to)           # peak / mean memory, CPU mean / rolling p90 / peak,
                                                # network bytes received / sent in the window

CPU is in % of the cores the app may use (container: online CPUs; process: this machine's cores;
url: --app-cpus, default 1 for a remote URL), so 100 % means all of them busy. The plan's "CPU < 80 %"
is judged sustained: the mean over the window (and the 90th percentile of 10-second rolling means is
reported), never one sample.
Network I/O comes from the `networks` section of the same docker stats frames (bytes received and sent
on the container's interfaces); psutil's counters are the whole machine's and /metrics has none, so
on the process and url targets it is not measured (None).
The sampler's own CPU (thread time) is kept for the harness-overhead criterion.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from validation import api
from validation.targets.resources import (
    CPU_METRIC,
    RSS_METRIC,
    docker_cpu_share,
    docker_memory_bytes,
    docker_network_bytes,
    metrics_values,
)


@dataclass
class Sample:
    t: float  # epoch seconds
    memory_bytes: int
    cpu_percent: float | None  # of the available cores
    limit_bytes: int | None = None
    net_rx_bytes: int | None = None  # counters since the container's network came up (docker stats only)
    net_tx_bytes: int | None = None


class Backend:
    source = ""
    interval = 1.0

    def open(self) -> None:  # noqa: B027 - optional hook
        pass

    def read(self) -> Sample | None:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class PsutilBackend(Backend):
    """psutil on the app's pid: RSS of the process and its children; CPU from cpu_times deltas."""

    def __init__(self, pid: int, interval: float = 0.5, cores: int | None = None) -> None:
        self.pid = pid
        self.interval = interval
        self.cores = cores or os.cpu_count() or 1
        self.source = f"psutil on pid {pid} (RSS incl. children; CPU of {self.cores} cores)"
        self._last: tuple[float, float] | None = None

    def _procs(self):
        import psutil

        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def read(self) -> Sample | None:
        import psutil

        try:
            procs = self._procs()
            rss, cpu_s = 0, 0.0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
                    ct = p.cpu_times()
                    cpu_s += ct.user + ct.system + getattr(ct, "children_user", 0) + getattr(ct, "children_system", 0)
        except psutil.Error:
            return None
        now = time.time()
        pct = None
        if self._last is not None:
            dt = now - self._last[0]
            pct = max(0.0, (cpu_s - self._last[1]) / dt * 100 / self.cores) if dt > 0 else None
        self._last = (now, cpu_s)
        return Sample(now, rss, pct)


class DockerStatsBackend(Backend):
    """The Docker stats API (streaming, one sample a second): memory in use (usage minus inactive
    page cache, as `docker stats` shows) against the container's limit, CPU from cpu/precpu deltas."""

    interval = 1.0

    def __init__(self, container) -> None:
        self.container = container
        self.source = f"docker stats of container {container.id[:12]}"
        self._stream = None

    def open(self) -> None:
        self._stream = self.container.stats(stream=True, decode=True)

    def read(self) -> Sample | None:
        try:
            s = next(self._stream)
        except (StopIteration, Exception):  # noqa: BLE001 - container gone
            return None
        return self.parse(s)

    @staticmethod
    def parse(s: dict[str, Any]) -> Sample | None:
        memory = docker_memory_bytes(s)
        if memory is None:
            return None
        rx, tx = docker_network_bytes(s) or (None, None)
        return Sample(time.time(), memory, docker_cpu_share(s), (s.get("memory_stats") or {}).get("limit"), rx, tx)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()


class MetricsBackend(Backend):
    """The app's own /metrics: process_resident_memory_bytes, rate of process_cpu_seconds_total."""

    def __init__(self, base_url: str, interval: float = 2.0, cores: int = 1, auth=None, max_samples: int = 600) -> None:
        self.base_url = base_url.rstrip("/")
        self.interval = interval
        self.cores = cores
        self.auth = auth
        self.max_samples = max_samples
        self.requests = 0
        self.source = (
            f"{self.base_url}/metrics (process_resident_memory_bytes, rate of process_cpu_seconds_total / {cores} core(s))"
        )
        self._last: tuple[float, float] | None = None
        self._client = None

    def open(self) -> None:
        self._client = api.Client(timeout=5, auth=self.auth)

    def read(self) -> Sample | None:
        if self.requests >= self.max_samples:
            return None
        self.requests += 1
        try:
            r = self._client.get(f"{self.base_url}/metrics")
            r.raise_for_status()
            values = metrics_values(r.text)
        except Exception:  # noqa: BLE001 - a missed sample is not fatal
            return None
        if RSS_METRIC not in values:
            return None
        now = time.time()
        pct = None
        cpu_s = values.get(CPU_METRIC)
        if cpu_s is not None:
            if self._last is not None and now > self._last[0]:
                pct = max(0.0, (cpu_s - self._last[1]) / (now - self._last[0]) * 100 / self.cores)
            self._last = (now, cpu_s)
        return Sample(now, int(values[RSS_METRIC]), pct)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def rolling_means(samples: list[Sample], window_s: float = 10.0) -> list[float]:
    """Mean CPU of every `window_s`-second window that ends at a sample (a run shorter than one
    window gives one value: its mean)."""
    pts = [(s.t, s.cpu_percent) for s in samples if s.cpu_percent is not None]
    if not pts:
        return []
    if pts[-1][0] - pts[0][0] < window_s:
        return [sum(c for _, c in pts) / len(pts)]
    out = []
    for t, _ in pts:
        if t - pts[0][0] < window_s:
            continue
        win = [c for (u, c) in pts if t - window_s < u <= t]
        out.append(sum(win) / len(win))
    return out


def counter_increase(values: list[int | None]) -> int | None:
    """How much a cumulative counter grew over consecutive readings; a drop is a reset (the container
    restarted), after which the new reading counts from 0. None when no reading has it."""
    vs = [v for v in values if v is not None]
    if not vs:
        return None
    return sum(b - a if b >= a else b for a, b in zip(vs, vs[1:]))


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


@dataclass
class Summary:
    samples: int
    memory_peak_bytes: int | None
    memory_mean_bytes: float | None
    memory_limit_bytes: int | None
    cpu_mean: float | None
    cpu_p90_10s: float | None
    cpu_peak: float | None
    source: str
    seconds: float = 0.0  # first to last sample
    net_rx_bytes: int | None = None  # received in the window (None: not measured by this backend)
    net_tx_bytes: int | None = None  # sent in the window

    def to_dict(self) -> dict:
        return self.__dict__.copy()


class Sampler:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.samples: list[Sample] = []
        self.errors = 0
        self.cpu_seconds = 0.0  # the sampler thread's own CPU
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="perf-sampler", daemon=True)

    @classmethod
    def for_target(cls, target, *, cores: int | None = None, interval: float | None = None, auth=None) -> Sampler:
        kind = getattr(target, "kind", "")
        if kind == "container":
            return cls(DockerStatsBackend(target.container))
        if kind == "process":
            return cls(PsutilBackend(target.pid, interval or 1.0))  # one a second, like docker stats
        return cls(MetricsBackend(target.base_url, interval or 2.0, cores or 1, auth=auth))

    @property
    def source(self) -> str:
        return self.backend.source

    @property
    def wall_s(self) -> float:
        """Seconds the sampler ran (start to stop, or to now)."""
        if self.started_at is None:
            return 0.0
        return (self.stopped_at or time.monotonic()) - self.started_at

    def _loop(self) -> None:
        t_cpu = time.thread_time()
        try:
            self.backend.open()
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    s = self.backend.read()
                except Exception:  # noqa: BLE001
                    s = None
                if s is None:
                    self.errors += 1
                else:
                    self.samples.append(s)
                if isinstance(self.backend, DockerStatsBackend):
                    continue  # the stream paces itself (one sample a second)
                self._stop.wait(max(0.0, self.backend.interval - (time.monotonic() - t0)))
        finally:
            with contextlib.suppress(Exception):
                self.backend.close()
            self.cpu_seconds = time.thread_time() - t_cpu

    def start(self) -> Sampler:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if isinstance(self.backend, DockerStatsBackend):
            self._thread.join(3)  # the next stats frame (<= 1 s) ends the loop
        self._thread.join(10)
        self.stopped_at = time.monotonic()

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def window(self, t_from: float | None = None, t_to: float | None = None) -> list[Sample]:
        return [s for s in self.samples if (t_from is None or s.t >= t_from) and (t_to is None or s.t <= t_to)]

    def summary(self, t_from: float | None = None, t_to: float | None = None) -> Summary:
        ss = self.window(t_from, t_to)
        mem = [s.memory_bytes for s in ss]
        cpu = [s.cpu_percent for s in ss if s.cpu_percent is not None]
        limits = [s.limit_bytes for s in ss if s.limit_bytes]
        return Summary(
            samples=len(ss),
            memory_peak_bytes=max(mem) if mem else None,
            memory_mean_bytes=sum(mem) / len(mem) if mem else None,
            memory_limit_bytes=limits[-1] if limits else None,
            cpu_mean=round(sum(cpu) / len(cpu), 2) if cpu else None,
            cpu_p90_10s=round(_p(rolling_means(ss), 0.9), 2) if cpu else None,
            cpu_peak=round(max(cpu), 2) if cpu else None,
            source=self.source,
            seconds=round(ss[-1].t - ss[0].t, 1) if ss else 0.0,
            net_rx_bytes=counter_increase([s.net_rx_bytes for s in ss]),
            net_tx_bytes=counter_increase([s.net_tx_bytes for s in ss]),
        )
