"""Memory, CPU, network and disk of the app as read from outside, one formula each, shared by the
targets' `resource_sample` / `disk_usage`, the perf sampler (validation/perf/sampler.py) and the
resilience apps: docker stats (memory as `docker stats` shows it: usage minus inactive page cache;
network bytes of the container's interfaces), `docker ps --size` (the writable layer), psutil (RSS of
the process and its children), folders on disk (allocated bytes, as `du` counts them), and the app's
own /metrics (Prometheus' process collector; the checkpoint volume's file system)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RSS_METRIC = "process_resident_memory_bytes"
CPU_METRIC = "process_cpu_seconds"  # the family of process_cpu_seconds_total
VOLUME_METRIC = "cai_checkpoint_volume_bytes"  # app/metrics.py: the checkpoint volume's file system, by kind
GB = 1e9  # disk in decimal GB, as `docker images` and image.size count it


def docker_memory_bytes(stats: dict[str, Any]) -> int | None:
    """Memory in use from one `docker stats` reading; None when it has none (container gone)."""
    mem = stats.get("memory_stats") or {}
    if not mem.get("usage"):
        return None
    st = mem.get("stats", {})
    cache = st.get("inactive_file", st.get("total_inactive_file", st.get("cache", 0)))
    return max(0, mem["usage"] - cache)


def docker_cpu_share(stats: dict[str, Any]) -> float | None:
    """CPU since the previous reading as a share of all the host's CPUs (0-100); None on a first
    reading (no previous one to compare with)."""
    cs, ps = stats.get("cpu_stats", {}), stats.get("precpu_stats", {})
    d_cpu = cs.get("cpu_usage", {}).get("total_usage", 0) - ps.get("cpu_usage", {}).get("total_usage", 0)
    d_sys = cs.get("system_cpu_usage", 0) - ps.get("system_cpu_usage", 0)
    return (d_cpu / d_sys) * 100 if d_sys > 0 and ps.get("system_cpu_usage") else None


def docker_online_cpus(stats: dict[str, Any]) -> int:
    cs = stats.get("cpu_stats", {})
    return cs.get("online_cpus") or len(cs.get("cpu_usage", {}).get("percpu_usage") or [1])


def rss_bytes(procs) -> int:
    """Resident memory of psutil processes (the app and its children), summed."""
    return sum(p.memory_info().rss for p in procs)


def metrics_values(text: str) -> dict[str, float]:
    """The process collector's RSS and CPU seconds from a /metrics page (the names above)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {fam.name: fam.samples[0].value for fam in text_string_to_metric_families(text)
            if fam.name in (RSS_METRIC, CPU_METRIC) and fam.samples}


def docker_network_bytes(stats: dict[str, Any]) -> tuple[int, int] | None:
    """(received, sent) bytes summed over the container's interfaces from one `docker stats` reading
    (counters since the container's network came up); None without a `networks` section (network
    mode none or host, or the container gone)."""
    nets = stats.get("networks") or {}
    if not nets:
        return None
    return (sum(int(n.get("rx_bytes", 0)) for n in nets.values()),
            sum(int(n.get("tx_bytes", 0)) for n in nets.values()))


def docker_size_rw(listing: list[dict[str, Any]]) -> int | None:
    """The writable layer's bytes from `docker ps --size` (API: GET /containers/json?size=1) filtered on
    one container. The engine leaves SizeRw out when it is 0; None when the listing has no size at all."""
    if not listing or "SizeRootFs" not in listing[0]:
        return None
    return int(listing[0].get("SizeRw") or 0)


def dir_bytes(path: Path) -> int:
    """Bytes a folder occupies on disk, as `du -s` counts them: allocated blocks of every file and
    folder under it, each inode once (hard links), symlinks not followed."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in [".", *dirs, *files]:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:  # removed while walking
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def metrics_volume_used(text: str) -> float | None:
    """`cai_checkpoint_volume_bytes{kind="used"}` from a /metrics page: the used bytes of the file
    system that holds the checkpoint volume; None when the app does not export it (or it is NaN)."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        if fam.name == VOLUME_METRIC:
            for s in fam.samples:
                if s.labels.get("kind") == "used" and s.value == s.value:  # NaN: the app could not read it
                    return s.value
    return None


@dataclass
class DiskUsage:
    """What the deployment occupies on disk, in named parts (bytes), or why it was not measured."""

    source: str  # how the parts were counted, for the report's detail
    parts: dict[str, int] = field(default_factory=dict)
    skipped: str = ""  # non-empty: not measured on this target, and why (recorded as skipped)
    error: str = ""  # non-empty: should have been measured but could not be (a failure)

    @property
    def total(self) -> int | None:
        return None if self.skipped or self.error else sum(self.parts.values())

    def describe(self) -> str:
        """e.g. 'image 1.534 GB + writable layer 12.3 kB + ... = 1.573 GB'."""
        parts = " + ".join(f"{name} {size_text(b)}" for name, b in self.parts.items())
        return f"{parts} = {(self.total or 0) / GB:.3f} GB (decimal units: GB = 10^9 bytes)"


def size_text(n: int) -> str:
    """Bytes in the decimal unit that keeps a small part readable: 1.534 GB, 39.2 MB, 12.3 kB."""
    if n >= GB:
        return f"{n / GB:.3f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"
