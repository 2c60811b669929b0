"""Memory, CPU and latency over time as one PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from validation.perf.sampler import Sample


def plot_run(
    path: Path,
    samples: list[Sample],
    requests: list[dict] | None = None,
    *,
    t0: float | None = None,
    load_window: tuple[float, float] | None = None,
    train_window: tuple[float | None, float | None] | None = None,
    memory_limit_gb: float | None = None,
    cpu_threshold: float | None = None,
    title: str = "",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    requests = requests or []
    t0 = t0 if t0 is not None else (samples[0].t if samples else (requests[0]["t"] if requests else 0.0))
    fig, axes = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True)
    ax_mem, ax_cpu, ax_lat = axes
    ts = [s.t - t0 for s in samples]
    ax_mem.plot(ts, [s.memory_bytes / 2**30 for s in samples], color="tab:blue", lw=1.5)
    ax_mem.set_ylabel("memory (GB)")
    if memory_limit_gb:
        ax_mem.axhline(memory_limit_gb, color="tab:red", ls="--", lw=1, label=f"threshold {memory_limit_gb} GB")
        ax_mem.legend(loc="upper left", fontsize=8)
    cpu_pts = [(s.t - t0, s.cpu_percent) for s in samples if s.cpu_percent is not None]
    if cpu_pts:
        ax_cpu.plot([p[0] for p in cpu_pts], [p[1] for p in cpu_pts], color="tab:orange", lw=1.5)
    ax_cpu.set_ylabel("CPU (% of cores)")
    ax_cpu.set_ylim(0, 105)
    if cpu_threshold:
        ax_cpu.axhline(cpu_threshold, color="tab:red", ls="--", lw=1, label=f"threshold {cpu_threshold} %")
        ax_cpu.legend(loc="upper left", fontsize=8)
    groups: dict[str, list[tuple[float, float, bool]]] = {}
    for r in requests:
        groups.setdefault(r["name"], []).append((r["t"] - t0, r["ms"], r["ok"]))
    for name, pts in sorted(groups.items()):
        ok = [(x, y) for x, y, good in pts if good]
        bad = [(x, y) for x, y, good in pts if not good]
        if ok:
            ax_lat.scatter([p[0] for p in ok], [p[1] for p in ok], s=10, label=name)
        if bad:
            ax_lat.scatter([p[0] for p in bad], [p[1] for p in bad], s=25, marker="x", color="red")
    if groups:
        ax_lat.set_yscale("log")
        ax_lat.legend(loc="upper left", fontsize=7, ncol=2)
    ax_lat.set_ylabel("latency (ms, log)")
    ax_lat.set_xlabel("seconds since the sampler started")
    for ax in axes:
        if load_window:
            ax.axvspan(load_window[0] - t0, load_window[1] - t0, color="tab:green", alpha=0.08)
        if train_window and train_window[0] and train_window[1]:
            ax.axvspan(train_window[0] - t0, train_window[1] - t0, color="tab:purple", alpha=0.10)
        ax.grid(alpha=0.3)
    fig.suptitle((title + "\n" if title else "") + "green: load running, purple: training running", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
