"""The data and recovery checks of the resilience gate: plain functions that measure, record through
the gate and fail naming the criterion. tests/test_gate_resilience.py runs them against broken subjects.

    snapshot_runs / partial_checkpoints   what the checkpoint volume holds, read from the host
    data_loss / interrupted_run           after a kill or restart: completed runs intact, the active one marked
    restart_window                        errors only while the app restarts (Sample: one request's outcome)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from validation.gate import Gate

FINAL_OK = "succeeded"


# ---------------------------------------------------------------------------------------------
# Runs on the checkpoint volume


def snapshot_runs(checkpoint_dir: Path) -> dict[str, dict]:
    """{run_id: {"state", "files": {relpath: sha256}, "tmp": [leftovers], "meta_ok"}} read from the host."""
    out: dict[str, dict] = {}
    runs = Path(checkpoint_dir) / "runs"
    if not runs.is_dir():
        return out
    for d in sorted(runs.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        try:
            meta = json.loads((d / "metadata.json").read_text())
            meta_ok = isinstance(meta, dict)
        except (OSError, ValueError):
            meta, meta_ok = {}, False
        files = {}
        for f in sorted(d.rglob("*")):
            if f.is_file() and not any(p.startswith(".tmp-") for p in f.relative_to(d).parts):
                if f.name == "metadata.json" or f.suffix in (".json", ".csv") and f.parent == d:
                    continue  # metadata changes legitimately (state); impact reports are rewritten
                files[str(f.relative_to(d))] = hashlib.sha256(f.read_bytes()).hexdigest()
        out[d.name] = {
            "state": meta.get("state"),
            "trained": meta.get("trained"),
            "files": files,
            "tmp": sorted(str(p.relative_to(d)) for p in d.glob(".tmp-*")),
            "meta_ok": meta_ok,
        }
    return out


def completed(snapshot: dict[str, dict]) -> dict[str, dict]:
    return {k: v for k, v in snapshot.items() if v["state"] == FINAL_OK and v["trained"]}


CHECKPOINT_FILES = ("config.json", "model.safetensors")


def partial_checkpoints(snapshot: dict[str, dict]) -> list[str]:
    """Run folders with half a checkpoint: a base/ or trained/ without its config and weights."""
    bad = []
    for run_id, info in snapshot.items():
        for kind in ("base", "trained"):
            names = {p.split("/", 1)[1] for p in info["files"] if p.startswith(kind + "/")}
            if names and not all(f in names for f in CHECKPOINT_FILES):
                bad.append(f"{run_id}/{kind} has only {sorted(names)}")
        if info["state"] == FINAL_OK and not any(p.startswith("trained/") for p in info["files"]):
            bad.append(f"{run_id} says succeeded without trained/")
        if not info["meta_ok"]:
            bad.append(f"{run_id}/metadata.json unreadable")
    return bad


def data_loss(
    gate: Gate, before: dict[str, dict], after: dict[str, dict], listed: list[dict] | None, what: str, soft: bool = False
) -> list[str]:
    """Every run completed before the fault is still there after it: same state, same checkpoint
    bytes, and listed by GET /api/runs. Records `data.loss` (count of lost or changed runs/files)."""
    lost: list[str] = []
    listed_ids = {r.get("run_id"): r for r in listed or [] if isinstance(r, dict)}
    for run_id, info in completed(before).items():
        now = after.get(run_id)
        if now is None:
            lost.append(f"{run_id}: run folder gone")
            continue
        if now["state"] != FINAL_OK:
            lost.append(f"{run_id}: state {info['state']} -> {now['state']}")
        for rel, digest in info["files"].items():
            if now["files"].get(rel) != digest:
                lost.append(f"{run_id}/{rel}: " + ("missing" if rel not in now["files"] else "changed"))
        if listed is not None:
            row = listed_ids.get(run_id)
            if row is None:
                lost.append(f"{run_id}: not listed by GET /api/runs")
            elif row.get("state") != FINAL_OK or not row.get("trained"):
                lost.append(f"{run_id}: listed as {row.get('state')!r}, trained={row.get('trained')!r}")
    n_files = sum(len(v["files"]) for v in completed(before).values())
    gate.measure(
        "data.loss",
        len(lost),
        detail=f"{what}: {len(completed(before))} completed runs, {n_files} checkpoint files compared"
        + (f"; lost: {'; '.join(lost[:4])}" if lost else ", all intact"),
        soft=soft,
    )
    return lost


def interrupted_run(gate: Gate, run_id: str, after: dict[str, dict], listed: list[dict], what: str, soft: bool = False) -> None:
    """The run active at the fault is reported `interrupted` (never succeeded), with no half-written
    checkpoint and no temp leftovers."""
    row = next((r for r in listed if isinstance(r, dict) and r.get("run_id") == run_id), None)
    state = row.get("state") if row else "(not listed by GET /api/runs)"
    disk = after.get(run_id, {})
    gate.measure(
        "resilience.killed_run_state",
        state,
        detail=f"{what}: run {run_id}; on disk state {disk.get('state')!r}, trained {disk.get('trained')!r}",
        soft=True,
    )
    partial = partial_checkpoints({run_id: disk}) if disk else [f"{run_id}: run folder missing"]
    if disk.get("tmp"):
        partial.append(f"{run_id}: temp leftovers {disk['tmp']}")
    if disk and disk.get("state") != FINAL_OK and any(p.startswith("trained/") for p in disk["files"]):
        partial.append(f"{run_id}: trained/ present although the run did not finish")
    gate.measure(
        "resilience.partial_checkpoints",
        len(partial),
        detail=f"{what}: " + ("; ".join(partial) if partial else f"{run_id}: no trained/, no temp leftovers"),
        soft=True,
    )
    if not soft:
        gate.raise_pending()


# ---------------------------------------------------------------------------------------------
# Restart under load


@dataclass
class Sample:
    t: float  # time.monotonic() when the request was sent
    ok: bool
    what: str  # "GET /health 200" or the error


def restart_window(
    gate: Gate, samples: list[Sample], t_restart: float, t_healthy: float | None, what: str = "docker restart"
) -> dict:
    """Errors must fall inside [restart issued, first success after it]; records the recovery time,
    errors outside the window and the error rate outside it."""
    samples = sorted(samples, key=lambda s: s.t)
    recovered = None
    if t_healthy is not None:
        failed_after = [s for s in samples if s.t >= t_restart and not s.ok]
        start = failed_after[0].t if failed_after else t_restart
        recovered = next((s.t for s in samples if s.t >= max(start, t_restart) and s.ok and s.t >= t_healthy - 0.5), None)
        recovered = recovered if recovered is not None else t_healthy
    end = recovered if recovered is not None else float("inf")
    outside = [s for s in samples if (s.t < t_restart or s.t > end) and not s.ok]
    n_outside = len([s for s in samples if s.t < t_restart or s.t > end])
    inside_errors = len([s for s in samples if t_restart <= s.t <= end and not s.ok])
    if recovered is None:
        gate.fail("resilience.recovery_time", None, f"{what}: the app never answered again ({len(samples)} requests)")
    recovery = round(recovered - t_restart, 2)
    gate.measure(
        "resilience.recovery_time",
        recovery,
        detail=f"{what}: restart issued -> first successful request; {inside_errors} errors inside the window",
        soft=True,
    )
    gate.measure(
        "resilience.errors_outside_restart",
        len(outside),
        detail=f"{what}: {n_outside} requests outside the window"
        + (f"; e.g. {outside[0].what} at {outside[0].t - t_restart:+.1f} s" if outside else ""),
        soft=True,
    )
    rate = round(100.0 * len(outside) / n_outside, 3) if n_outside else 0.0
    gate.measure(
        "perf.error_rate",
        rate,
        detail=f"{what}: failed requests outside the restart window, {len(outside)}/{n_outside}",
        soft=True,
    )
    gate.raise_pending()
    return {"recovery_s": recovery, "inside_errors": inside_errors, "outside_errors": len(outside), "requests": len(samples)}
