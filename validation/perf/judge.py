"""The perf gate's logic, without pytest or locust: is this the app, the training run watched from
outside, and the measured load + resource samples judged against criteria.toml.

The gate-sensitivity tests (tests/test_gate_perf.py) call these same functions on stub subjects.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from validation import api
from validation.criteria import TRAINING_TIME
from validation.gate import CLOCK, Gate
from validation.perf.loadrun import LoadResult, exact_percentile, quantile_bounds
from validation.perf.sampler import Summary
from validation.targets.resources import GB as DISK_GB
from validation.targets.resources import DiskUsage

GB = 2**30
MB = 1e6  # network bytes in decimal MB (disk in decimal GB: DISK_GB)
NETWORK_NOT_MEASURED = {  # why perf.network_io has no figure on these targets
    "process": "process target: not measured; psutil's network counters are the whole machine's (every process, "
    "the load generator included) and there is no per-process source",
    "url": "url target: not measured; the app's /metrics has no network counters and the platform's are not "
    "reachable from here",
}
HEALTH = "GET /health"
RULES = "POST /api/evaluate [rules]"
JUDGE = "POST /api/evaluate [judge]"
GENERATE = "POST /api/generate"


class NotThisApp(RuntimeError):
    """The URL does not serve the CAI demo; the perf gate refuses to send it load."""


def identify(base_url: str, auth=None, timeout: float = 10) -> dict:
    """Two GETs (/health, /api/models) that must have this app's shape; NotThisApp otherwise."""
    problems = []
    info: dict[str, Any] = {}
    with api.Client(base_url=base_url, auth=auth, timeout=timeout, follow_redirects=False) as c:
        try:
            r = c.get("/health")
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
            if r.status_code != 200 or not isinstance(body, dict):
                problems.append(f"GET /health -> {r.status_code} {r.headers.get('content-type', '')}: {r.text[:100]!r}")
            elif body.get("status") != "healthy" or "model_state" not in body or "version" not in body:
                problems.append(
                    f"GET /health body is not the app's ({{status: healthy, version, model_state}}): {r.text[:120]!r}"
                )
            else:
                info["health"] = body
            r = c.get("/api/models")
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
            reg = body.get("registry") if isinstance(body, dict) else None
            if r.status_code != 200 or not isinstance(reg, list) or "state" not in body:
                problems.append(f"GET /api/models -> {r.status_code}: not {{registry: [...], current, state}}: {r.text[:100]!r}")
            elif not any(isinstance(m, dict) and m.get("name") == "tiny" for m in reg):
                problems.append(
                    f"GET /api/models: registry has no `tiny` model: {[m.get('name') for m in reg if isinstance(m, dict)]}"
                )
            else:
                info["models"] = body
        except httpx.HTTPError as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
    if problems:
        raise NotThisApp(
            f"refusing to load-test {base_url}: it does not look like the CAI demo app (docs/http-api.md); " + "; ".join(problems)
        )
    return info


# ---------------------------------------------------------------------------------------------
# Training watched from outside


@dataclass
class TrainingWatch:
    """Start a preset and poll it in a thread until it ends (or `limit_s` passes: then cancel)."""

    base_url: str
    preset: str
    limit_s: float
    auth: Any = None
    interval: float = 1.0
    seed: int = 42
    job: dict = field(default_factory=dict)
    started_at: float | None = None  # epoch
    ended_at: float | None = None
    error: str | None = None
    polls: int = 0
    cpu_seconds: float = 0.0
    timed_out: bool = False

    def start(self) -> TrainingWatch:
        self._client = api.Client(base_url=self.base_url, auth=self.auth, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            r = self._client.post("/api/train", json={"preset": self.preset, "seed": self.seed})
            self.polls += 1
            body = r.json() if r.content else {}
            if r.status_code == 202:
                break
            if r.status_code == 409 and body.get("error") == "busy" and time.monotonic() < deadline:
                time.sleep(2)  # another run is active (an earlier test's): wait for it
                continue
            self.error = f"POST /api/train -> {r.status_code} {r.text[:160]}"
            self.ended_at = time.time()
            return self
        self.started_at = time.time()
        self.job = body
        self._thread = threading.Thread(target=self._poll, name="perf-train-watch", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        """api.poll_job to a final state, or cancel at `limit_s`; every answer counted and kept."""
        t_cpu = time.thread_time()

        def seen(job: dict) -> bool:
            self.polls += 1
            self.job = job
            return False

        try:
            left = self.limit_s - (time.time() - self.started_at)
            self.job = api.poll_job(self._client, self.job["job_id"], timeout=max(0.0, left), interval=self.interval,
                                    until=seen)
            if self.job.get("state") not in api.FINAL_STATES:
                self.timed_out = True
                self._client.post(f"/api/train/{self.job['job_id']}/cancel")
                self.polls += 1
        except (api.JobPollError, httpx.HTTPError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended_at = time.time()
            self.cpu_seconds = time.thread_time() - t_cpu

    def wait(self, timeout: float | None = None) -> TrainingWatch:
        t = getattr(self, "_thread", None)
        if t is not None:
            with CLOCK.spent("app"):  # the job runs in the app; this thread only polls it
                t.join(timeout)
        return self

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.started_at, 2)

    def close(self) -> None:
        c = getattr(self, "_client", None)
        if c is not None:
            c.close()


def settle_training(base_url: str, auth=None, timeout: float = 60) -> str:
    """After the load: let a run the load's trainer user started finish (or cancel it): the app is
    left idle for the next test. Returns what was done."""
    with api.Client(base_url=base_url, auth=auth, timeout=10) as c:
        active = (c.get("/api/train").json() or {}).get("active")
        if not active:
            return "no run active"
        job = api.poll_job(c, active["job_id"], timeout=timeout, interval=1)
        if job.get("state") in api.FINAL_STATES:
            return f"run {active['job_id']} started by the load ended {job.get('state')}"
        c.post(f"/api/train/{active['job_id']}/cancel")
        return f"run {active['job_id']} started by the load cancelled after {timeout:.0f} s"


# ---------------------------------------------------------------------------------------------
# Judging


def _fmt_ms(s: float | None) -> str:
    return "—" if s is None else f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"


def endpoint_table(result: LoadResult) -> list[str]:
    """Markdown lines: the per-endpoint latency table."""
    lines = [
        "| endpoint | requests | failures | p50 | p95 | p99 | max | RPS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in [*sorted(result.endpoints.values(), key=lambda e: e.name), result.total]:
        lines.append(
            f"| `{e.name}` | {e.count} | {e.failures} | {_fmt_ms(e.p50_s)} | {_fmt_ms(e.p95_s)} | "
            f"{_fmt_ms(e.p99_s)} | {_fmt_ms(e.max_s)} | {e.rps:.2f} |"
        )
    return lines


def _endpoint(result: LoadResult, prefix: str):
    found = result.find(prefix)
    return found[0] if found else None


def during(result: LoadResult, prefix: str, t_from: float | None, t_to: float | None) -> list[float]:
    """Latencies (s) of requests to `prefix` that started inside [t_from, t_to] (the request log)."""
    if t_from is None or t_to is None:
        return []
    return [r["ms"] / 1000 for r in result.requests if r["name"].startswith(prefix) and t_from <= r["t"] <= t_to]


def judge_load(gate: Gate, result: LoadResult, budget: int, generations: int = 0, soft: bool = True) -> None:
    """Requests, successes, errors and the latency percentiles of one load run (`budget` requests of
    the user mix, plus `generations` in the generators' own pool)."""
    sent, failed = result.sent, result.total.failures
    what = f"{budget} requests + {generations} generations" if generations else f"{budget} requests"
    budget += generations
    gate.measure(
        "perf.requests_over_budget",
        max(0, sent - budget),
        detail=f"sent {sent} of a budget of {what} ({result.spec.get('users')} users"
        + (f", {result.spec.get('workers')} workers" if result.spec.get("workers") else "")
        + ")",
        soft=soft,
    )
    ok = sent - failed
    gate.measure(
        "perf.load_success",
        round(100.0 * ok / budget, 3) if budget else None,
        detail=f"{ok} of the budget's {what} succeeded ({sent} sent, {failed} failed)",
        soft=soft,
    )
    gate.measure(
        "perf.error_rate",
        round(100.0 * failed / sent, 3) if sent else None,
        detail=f"{failed} failed of {sent}" + (f"; first: {result.errors[0].get('Error', '')[:120]}" if result.errors else ""),
        soft=soft,
    )
    judge_generation_p95(gate, result, soft)
    for cid, prefix, what in (
        ("perf.health_p95", HEALTH, "GET /health"),
        ("perf.evaluate_p95", RULES, "rules evaluation"),
    ):
        e = _endpoint(result, prefix)
        if e is None or not e.count:
            gate.measure(cid, None, detail=f"no {what} requests in the run", soft=soft)
            continue
        gate.measure(
            cid,
            e.p95_s,
            detail=f"{e.name}: {e.count} requests, p50 {_fmt_ms(e.p50_s)}, p99 {_fmt_ms(e.p99_s)}, "
            f"{e.failures} failed, {result.spec.get('users')} users",
            soft=soft,
        )


def judge_generation_p95(gate: Gate, result: LoadResult, soft: bool = True) -> None:
    """perf.response_p95 on the 95 % upper confidence bound of the generations' p95, from every
    generation's latency in the request log: a regression, not one slow request, turns it red."""
    lat = during(result, GENERATE, float("-inf"), float("inf"))
    lower, upper = quantile_bounds(lat, 0.95)
    too_few = "" if upper is not None else " (an upper bound needs at least 59: raise load_generations)"
    gate.measure(
        "perf.response_p95",
        upper,
        detail=f"{len(lat)} generations{too_few}: p95 {_fmt_ms(exact_percentile(lat, 0.95))}, 95 % bounds "
        f"{_fmt_ms(lower)} .. {_fmt_ms(upper)}, p50 {_fmt_ms(exact_percentile(lat, 0.5))}, {result.spec.get('users')} users",
        soft=soft,
    )


def judge_resources(
    gate: Gate, summary: Summary, cpu_summary: Summary | None = None, soft: bool = True, what: str = "load and training"
) -> None:
    """Peak memory (whole run) and sustained CPU (the load window: `cpu_summary`, else `summary`)."""
    if summary.memory_peak_bytes is None:
        gate.measure("perf.memory_peak", None, detail=f"no memory samples ({summary.source})", soft=soft)
    else:
        limit = f" of a {summary.memory_limit_bytes / GB:.1f} GB limit" if summary.memory_limit_bytes else ""
        gate.measure(
            "perf.memory_peak",
            round(summary.memory_peak_bytes / GB, 3),
            detail=f"during {what}{limit}; mean {summary.memory_mean_bytes / GB:.2f} GB; "
            f"{summary.samples} samples, {summary.source}",
            soft=soft,
        )
    c = cpu_summary or summary
    gate.measure(
        "perf.cpu",
        c.cpu_mean,
        detail=f"mean over the load ({c.samples} samples); 10 s rolling p90 {c.cpu_p90_10s} %, "
        f"single-sample peak {c.cpu_peak} %; {c.source}",
        soft=soft,
    )


def judge_training(gate: Gate, watch: TrainingWatch, result: LoadResult | None, soft: bool = True) -> None:
    cid = TRAINING_TIME.get(watch.preset)
    state = watch.job.get("state") if not watch.error else f"not started: {watch.error}"
    gate.measure(
        "train.state",
        "timed out" if watch.timed_out else state,
        detail=f"{watch.preset} {'under load' if result is not None else 'after the load'}, job "
        f"{watch.job.get('job_id')}, run {watch.job.get('run_id')}"
        + (f", error: {watch.job.get('error')}" if watch.job.get("error") else ""),
        soft=soft,
    )
    if cid:
        gate.measure(
            cid,
            watch.seconds if not watch.error else None,
            detail=f"{watch.preset} preset {'while the load ran' if result is not None else 'after the load'}; "
            f"{watch.job.get('total_steps', '?')} steps, "
            f"final loss {watch.job.get('loss')}" + (" (cancelled at the limit)" if watch.timed_out else ""),
            soft=soft,
        )
    if result is not None:
        lat = during(result, RULES, watch.started_at, watch.ended_at)
        p95 = exact_percentile(lat, 0.95)
        if lat:
            gate.measure(
                "perf.evaluate_p95_training",
                round(p95, 4),
                detail=f"{len(lat)} rules evaluations started while the {watch.preset} run was active "
                f"(p50 {_fmt_ms(exact_percentile(lat, 0.5))}, max {_fmt_ms(max(lat))})",
                soft=soft,
            )
        else:
            gate.recorder.note(
                f"no rules evaluation ran while the {watch.preset} training was active "
                "(the load ended before it began or started after it ended)"
            )


def judge_overhead(gate: Gate, result: LoadResult, helpers: list[tuple[str, float, float]], soft: bool = True) -> float:
    """The harness's CPU while the load runs, as % of one core: the locust process(es) (CPU from their
    rusage over their wall time, start-up included) plus each helper thread (name, CPU s, wall s: the
    resource sampler, the training poller) at its own average rate. Rates add up: they run together."""
    locust_rate = result.cpu_seconds / result.wall_s if result.wall_s else 0.0
    rates = [(name, cpu / wall if wall else 0.0, cpu, wall) for name, cpu, wall in helpers]
    pct = round(100.0 * (locust_rate + sum(r for _, r, _, _ in rates)), 2) if result.wall_s else None
    gate.measure(
        "perf.harness_overhead",
        pct,
        detail=f"locust {result.cpu_seconds:.2f} s CPU / {result.wall_s:.1f} s ({len(result.exit_codes)} process(es))"
        + "".join(f" + {name} {cpu:.2f} s / {wall:.0f} s" for name, _, cpu, wall in rates),
        soft=soft,
    )
    return pct or 0.0


def judge_network(gate: Gate, summary: Summary, target_kind: str, soft: bool = True, what: str = "load and training") -> None:
    """Bytes received + sent on the container's interfaces over the sampled window (docker stats
    `networks`). On targets without a per-app source it is recorded as skipped, with the reason."""
    cid = "perf.network_io"
    if not gate.criterion(cid).applies_to(target_kind):
        gate.record_skip(cid, NETWORK_NOT_MEASURED.get(target_kind, f"{target_kind} target: not measured"))
        return
    rx, tx = summary.net_rx_bytes, summary.net_tx_bytes
    if rx is None or tx is None:
        gate.measure(cid, None, detail=f"no network counters in {summary.source} (network mode none or host?)", soft=soft)
        return
    gate.measure(
        cid,
        round((rx + tx) / MB, 3),
        detail=f"received {rx / MB:.2f} MB + sent {tx / MB:.2f} MB on the container's interfaces over "
        f"{summary.seconds:.0f} s of {what} ({summary.samples} samples, {summary.source}: networks)",
        soft=soft,
    )


def network_line(summary: Summary, target_kind: str) -> str:
    """The load report's network sentence: bytes in and out, or why there are none."""
    if summary.net_rx_bytes is None or summary.net_tx_bytes is None:
        return "Network: " + NETWORK_NOT_MEASURED.get(target_kind, f"no network counters in {summary.source}") + "."
    return (f"Network ({summary.source}: networks): received {summary.net_rx_bytes / MB:.2f} MB, sent "
            f"{summary.net_tx_bytes / MB:.2f} MB over {summary.seconds:.0f} s.")


@dataclass
class Stream:
    """One stream's generations over HTTP: wall times and the answers (their tokens and the engine's
    own elapsed_s), and the engine's reference on the same export (None: not run, why)."""

    times: list[float]
    answers: list[dict]
    reference: dict | None = None
    why_no_reference: str = ""


def judge_stream(gate: Gate, model: dict, stream: Stream, soft: bool = True) -> None:
    """perf.engine, the stream's speed, and perf.engine_overhead: the app's time over HTTP for as many
    tokens as the reference decoded, against the engine's own on the same export."""
    gate.measure("perf.engine", model.get("engine"), soft=soft,
                 detail=f"{model.get('name')}: {model.get('weights')} weights, served from {model.get('export')}")
    app_s, tokens = exact_percentile(stream.times, 0.5), max(1, stream.answers[0]["tokens"])
    per_token = exact_percentile([a["elapsed_s"] / max(1, a["tokens"]) for a in stream.answers], 0.5)
    detail = (f"{tokens} tokens in {app_s:.3f} s over HTTP, median of {len(stream.times)}; load average "
              f"{os.getloadavg()[0]:.1f}")
    gate.measure("perf.stream_tokens_per_s", round(tokens / app_s, 1), detail=detail, soft=soft)
    gate.measure("perf.time_per_token", round(per_token * 1000, 1), detail=f"engine side: {detail}", soft=soft)
    if stream.reference is None:
        gate.record_skip("perf.engine_overhead", stream.why_no_reference)
        return
    # Best of each side: the time not inflated by other work on the host, which moves a median by
    # 20 % between runs a minute apart (docs/measurements.md)
    ref, best = stream.reference, min(stream.times)
    app_for_ref, ref_best = best / tokens * ref["tokens"], min(ref["runs"])
    gate.measure("perf.engine_overhead", round(app_for_ref / ref_best, 2), soft=soft,
                 detail=f"best of {len(stream.times)}: app {app_for_ref:.3f} s per {ref['tokens']} tokens over HTTP; "
                        f"the engine's LLMPipeline on the same export {ref_best:.3f} s (best of {len(ref['runs'])}, "
                        f"{ref['threads']} thread(s) as the app); medians {app_s / tokens * ref['tokens']:.3f} s and "
                        f"{ref['seconds']:.3f} s; default threads {ref['default_seconds']:.3f} s")


def judge_batching(gate: Gate, alone: list[tuple[int, int]], t_alone: float, together: list[tuple[int, int]],
                   t_together: float, soft: bool = True) -> None:
    """The same requests (tokens, batch size each) one at a time and all at once: throughput of the
    users together, the largest batch, and the speedup."""
    rate_alone = sum(n for n, _ in alone) / t_alone
    rate_together = sum(n for n, _ in together) / t_together
    batch = max(b for _, b in together)
    detail = (f"{len(together)} at once: {rate_together:.1f} tokens/s (largest batch {batch}); one at a time: "
              f"{rate_alone:.1f} tokens/s; greedy; load average {os.getloadavg()[0]:.1f}")
    gate.measure("perf.users_tokens_per_s", round(rate_together, 1), detail=detail, soft=soft)
    gate.measure("perf.batch_reached", batch, detail=detail, soft=soft)
    gate.measure("perf.batching_speedup", round(rate_together / rate_alone, 2), detail=detail, soft=soft)


def judge_disk(gate: Gate, usage: DiskUsage, when: str = "at the end of the perf session") -> None:
    """What the deployment occupies on disk (the target's DiskUsage) against perf.disk_used. Not
    measurable on this target: skipped with the reason; measurable but unread: a failure."""
    cid = "perf.disk_used"
    if usage.skipped:
        gate.skip(cid, usage.skipped)
    if usage.error:
        gate.measure(cid, None, detail=f"{usage.error} ({usage.source})")
        return
    gate.measure(cid, round(usage.total / DISK_GB, 3), detail=f"{when}: {usage.describe()}; {usage.source}")
