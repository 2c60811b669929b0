"""Latency over time, one line per probe, failed probes marked, down periods shaded (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from validation.watch.probes import PROBES, Probe


def plot_watch(path: Path, probes: list[Probe], incidents: list[dict], *, title: str = "",
               restart: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(10, 4.5))
    answered = [p.latency_s * 1000 for p in probes if p.status is not None] or [1.0]
    top = max(answered) * 2
    for which in PROBES:
        ps = [p for p in probes if p.which == which and p.status is not None]
        if ps:
            ax.plot([p.t_s for p in ps], [max(p.latency_s * 1000, 0.1) for p in ps], marker=".", ms=4, lw=1,
                    label=which)
    bad = [p for p in probes if not p.ok]
    if bad:
        ax.scatter([p.t_s for p in bad], [top] * len(bad), marker="x", color="red", s=30, label="failed probe")
    for i, inc in enumerate(incidents):
        ax.axvspan(inc["start_s"], inc["end_s"], color="red", alpha=0.15, label="down" if i == 0 else None)
    if restart and restart.get("issued_s") is not None:
        ax.axvline(restart["issued_s"], color="black", ls="--", lw=1, label="restart issued")
        if restart.get("back_s") is not None:
            ax.axvline(restart["back_s"], color="green", ls="--", lw=1, label="ready again")
    log = max(answered) / max(min(answered), 0.1) > 20
    if log:
        ax.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.set_ylabel("latency (ms, log)" if log else "latency (ms)")
    ax.set_xlabel("seconds since the watch started")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
