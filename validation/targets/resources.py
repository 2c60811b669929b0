"""Memory and CPU of the app as read from outside, one formula each, shared by the targets'
`resource_sample`, the perf sampler (validation/perf/sampler.py) and the resilience apps:
docker stats (memory as `docker stats` shows it: usage minus inactive page cache), psutil (RSS of the
process and its children), and the app's own /metrics (Prometheus' process collector)."""

from __future__ import annotations

from typing import Any

RSS_METRIC = "process_resident_memory_bytes"
CPU_METRIC = "process_cpu_seconds"  # the family of process_cpu_seconds_total


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
