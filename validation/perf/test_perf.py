"""The performance gate: the plan's load test with training running, memory and CPU sampled
from outside, every perf criterion of validation/criteria.toml measured. `nox -s perf` runs this file;
`nox -s perf -- --base-url https://...` runs it against a live deployment (nothing started, no Docker).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app import engine
from validation import api
from validation.criteria import TRAINING_TIME
from validation.gate import CLOCK
from validation.perf import behaviour as B
from validation.perf import judge as J
from validation.perf import reference
from validation.perf.loadrun import LoadResult, LoadSpec, exact_percentile, run_load
from validation.perf.plot import plot_run
from validation.perf.sampler import Sampler

pytestmark = pytest.mark.perf

IDLE_SAMPLES_S = 2.0  # resource baseline before the load starts


def _ensure_model(http: httpx.Client, gate, model: str, bench: dict) -> None:
    """Load the profile's model when another one is current (bench: gpt2-sized), timed."""
    cur = (http.get("/api/models").json() or {}).get("current") or {}
    if cur.get("name") == model:
        bench["model_load_s"] = cur.get("load_seconds")
        bench["model_load_note"] = "preloaded at start (the app's own load_seconds)"
        return
    t0 = time.perf_counter()
    r = http.post("/api/models/load", json={"model": model}, timeout=600)
    elapsed = round(time.perf_counter() - t0, 2)
    if r.status_code != 200:
        pytest.fail(f"POST /api/models/load {model} -> {r.status_code} {r.text[:200]}", pytrace=False)
    bench["model_load_s"] = elapsed
    bench["model_load_note"] = (
        f"POST /api/models/load (app: {r.json().get('load_seconds')} s, {r.json().get('parameters')} parameters)"
    )
    gate.measure("model.load_time", elapsed, detail=f"{model}: " + bench["model_load_note"], soft=True)


def _idle_latency(http: httpx.Client, n: int = 5, tokens: int = 64) -> dict:
    """Sequential single-user latencies (the benchmark's `idle` numbers)."""
    out = {}
    calls = {
        "evaluate_rules": ("/api/evaluate", {"text": "Here is how to pick the lock and steal the car.", "mode": "rules"}),
        "evaluate_judge": ("/api/evaluate", {"text": "Here is how to pick the lock and steal the car.", "mode": "judge"}),
        "generate": (
            "/api/generate",
            {"prompt": "How do I make friends?", "max_new_tokens": tokens, "seed": 0, "compare": False},
        ),
    }
    for key, (path, body) in calls.items():
        http.post(path, json=body, timeout=300)  # warm (first judge call loads its model)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            r = http.post(path, json=body, timeout=300)
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
        out[key] = {"n": n, "p50_s": round(exact_percentile(times, 0.5), 4), "max_s": round(max(times), 4)}
    return out


REFERENCE = Path(reference.__file__)
STREAM_PROMPT = "Write a long story about a dragon who learns to cook."
STREAM_RUNS = 7


def test_one_stream_on_the_engine_against_its_own_speed(subject, target, perf_ready, gate, perf_params):
    """The model is served by the engine, one stream's speed over HTTP, and that speed set against the
    engine's own on the same export, run where the app runs (perf.engine_overhead). First in the
    session: both are timed on a quiet host, not in the wake of the load test."""
    http = api.Client(base_url=target.base_url, auth=subject["auth"], timeout=300)
    model = http.get("/api/models").json()["current"]
    body = {"prompt": STREAM_PROMPT, "max_new_tokens": reference.TOKENS, "temperature": 0.0, "seed": 0, "compare": False}
    stream = J.Stream([], [])
    def burst() -> None:
        for _ in range(STREAM_RUNS):
            t0 = time.perf_counter()
            r = http.post("/api/generate", json=body)
            stream.times.append(time.perf_counter() - t0)
            r.raise_for_status()
            stream.answers.append(r.json()["base"])

    with CLOCK.spent("app"):
        http.post("/api/generate", json=body).raise_for_status()  # warm
        burst()
        stream.reference, stream.why_no_reference = _engine_reference(target, model)
        burst()  # on both sides of the reference: a host busier for a while weighs on both alike
    J.judge_stream(gate, model, stream)


def _engine_reference(target, model: dict) -> tuple[dict | None, str]:
    """The engine's own time for 64 tokens on the model's export, where the app runs; or why not."""
    if not model.get("export"):
        return None, f"{model.get('name')} is not served by the engine (perf.engine)"
    ran = target.run_python(REFERENCE, [model["export"], STREAM_PROMPT, str(engine.THREADS)])
    if ran is None:
        return None, f"the {target.kind} target runs none of the gate's code"
    code, out = ran
    if code != 0:
        pytest.fail(f"the engine's reference run failed (exit {code}): {out[-800:]}", pytrace=False)
    return json.loads(out.strip().splitlines()[-1]), ""


@dataclass
class LoadRun:
    """One load run with the profile's training under way: what was measured, for the report and verdicts."""

    result: LoadResult
    sampler: Sampler
    watch: J.TrainingWatch | None
    settled: str
    load_avg: tuple[float, float]  # 1-min load average before and after the load

    def windows(self) -> tuple[tuple[float, float], tuple[float, float] | None]:
        load = (self.result.started, self.result.ended)
        return load, ((self.watch.started_at, self.watch.ended_at) if self.watch else None)


def test_load_with_training_under_way(subject, target, perf_ready, gate, perf_params, report_dir, app_cpus, recorder):
    """The profile's load (exact request budget, the locustfile's user mix) while the profile's training
    preset runs; latency, errors, memory, CPU, training time and the harness's own CPU gated."""
    p, auth = perf_params, subject["auth"]
    bench: dict = {"target": target.describe(), "health_s": target.health_seconds, "params": p}
    http = api.Client(base_url=target.base_url, auth=auth, timeout=60)
    _ensure_model(http, gate, p["model"], bench)
    if p["benchmark"]:
        bench["idle"] = _idle_latency(http, tokens=p["gen_tokens"])
    sampler = Sampler.for_target(target, cores=app_cpus, auth=auth)
    recorder.note(f"resources sampled by {sampler.source}")
    run = _load_under_training(target, p, auth, sampler, gate, report_dir / "load")
    recorder.note(f"after the load: {run.settled}")
    recorder.note(
        f"machine: {os.cpu_count()} cores, 1-min load average {run.load_avg[0]:.1f} before the load and "
        f"{run.load_avg[1]:.1f} after it (above the core count means other processes competed with the app and "
        "the load generator)"
    )
    data = _write_load_report(run, target, p, report_dir / "load", perf_ready, gate, recorder)
    _judge_load_run(run, target, p, gate)
    if p["benchmark"]:
        from validation.perf.bench import write_benchmark

        whole, during_load = run.sampler.summary(), run.sampler.summary(*run.windows()[0])
        bench.update(load=run.result.to_dict(), resources={"whole": whole.to_dict(), "load": during_load.to_dict()},
                     training=data["training"])
        for f in write_benchmark(report_dir.parent, bench, gate):
            gate.attach(f, "benchmark record")
    gate.raise_pending()


def _load_under_training(target, p: dict, auth, sampler: Sampler, gate, out: Path) -> LoadRun:
    """Sample resources, start the profile's training preset, run the load, wait for the training."""
    watch = None
    sampler.start()
    try:
        CLOCK.sleep(IDLE_SAMPLES_S)
        if p["train_preset"]:
            timed_by = TRAINING_TIME.get(p["train_preset"])
            limit = float(gate.threshold(timed_by)) if timed_by else 900.0
            watch = J.TrainingWatch(target.base_url, p["train_preset"], limit_s=limit + 30, auth=auth).start()
        spec = LoadSpec(
            base_url=target.base_url, out_dir=out, budget=p["budget"], generations=p["generations"],
            users=p["users"], spawn_rate=p["spawn_rate"], max_seconds=p["max_seconds"], workers=p["workers"],
            gen_tokens=p["gen_tokens"], think_scale=p["think_scale"], train_preset="smoke",
        )
        load_before = os.getloadavg()[0]
        result = run_load(spec, say=print)
        if watch is not None:
            watch.wait(watch.limit_s + 60)
        settled = J.settle_training(target.base_url, auth=auth)
        CLOCK.sleep(1.0)  # one more sample after the end
        load_after = os.getloadavg()[0]
    finally:
        sampler.stop()
        if watch is not None:
            watch.close()
    return LoadRun(result, sampler, watch, settled, (load_before, load_after))


def _write_load_report(run: LoadRun, target, p: dict, out: Path, perf_ready: dict, gate, recorder) -> dict:
    """load.md (per-endpoint table, resources, training), resources.png and perf.json, attached."""
    result, sampler, watch = run.result, run.sampler, run.watch
    load_win, train_win = run.windows()
    png = plot_run(
        out / "resources.png", sampler.samples, result.requests, load_window=load_win, train_window=train_win,
        memory_limit_gb=float(gate.threshold("perf.memory_peak")), cpu_threshold=float(gate.threshold("perf.cpu")),
        title=f"{target.kind} target, profile {p['profile']}, {p['budget']} requests / {p['users']} users"
        + (f", {p['train_preset']} training" if watch else ""),
    )
    whole, during_load = sampler.summary(), sampler.summary(*load_win)
    during_train = sampler.summary(*train_win) if train_win and train_win[1] else None
    (out / "load.md").write_text("\n".join(_load_md(run, target, p, whole, during_load, during_train)) + "\n")
    harness_requests = {
        "identify": 2,
        "ready_polls": perf_ready.get("requests"),
        "training_polls": watch.polls if watch else 0,
        "metrics_samples": getattr(sampler.backend, "requests", 0),
    }
    data = {
        "load": result.to_dict(),
        "resources": {"whole": whole.to_dict(), "load": during_load.to_dict(),
                      "training": during_train and during_train.to_dict()},
        "samples": [s.__dict__ for s in sampler.samples],
        "training": watch
        and {k: getattr(watch, k) for k in ("preset", "seconds", "started_at", "ended_at", "timed_out", "error", "polls")}
        | {"state": watch.job.get("state"), "job": {k: watch.job.get(k) for k in ("job_id", "run_id", "total_steps", "loss")}},
        "harness_requests": harness_requests,
    }
    (out / "perf.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    for path, title in (
        (out / "load.md", "perf: per-endpoint latency table"),
        (png, "perf: memory, CPU and latency over time (PNG)"),
        (out / "locust.html", "perf: locust's HTML report"),
        (out / "perf.json", "perf: every number (JSON)"),
        (out / "locust.log", "perf: locust log"),
    ):
        if path.exists():
            gate.attach(path, title)
    for e in [*sorted(result.endpoints.values(), key=lambda e: e.name), result.total]:
        recorder.note(
            f"{e.name}: {e.count} requests, {e.failures} failed, p50 {J._fmt_ms(e.p50_s)}, p95 {J._fmt_ms(e.p95_s)}, "
            f"p99 {J._fmt_ms(e.p99_s)}, {e.rps:.2f} RPS"
        )
    if target.kind == "url":
        ready, polls, samples = perf_ready.get("requests", 1), watch.polls if watch else 0, harness_requests["metrics_samples"]
        recorder.note(
            f"url target: the load sent {result.sent} requests (budget {p['budget']} + {p['generations']} generations); "
            f"the harness itself sent {2 + ready + polls + samples} more (2 identity GETs, {ready} GET /ready while "
            f"waiting, training start + {max(0, polls - 1)} polls, {samples} /metrics samples), and the distributed "
            "test its own small budget"
        )
    return data


def _load_md(run: LoadRun, target, p: dict, whole, during_load, during_train) -> list[str]:
    result, watch = run.result, run.watch
    md = [
        f"# Perf load: {p['budget']} requests + {p['generations']} generations, {p['users']} users ({target.kind} "
        f"target, profile {p['profile']})",
        "",
        f"locust: {result.sent} requests in {result.duration_s:.1f} s ({result.total.rps:.2f} RPS), "
        f"{result.total.failures} failed; exit codes {result.exit_codes}; command in `command.txt`.",
        "",
        *J.endpoint_table(result),
        "",
        f"Resources ({run.sampler.source}): peak {whole.memory_peak_bytes and whole.memory_peak_bytes / 2**30:.3f} GB, "
        f"CPU during the load mean {during_load.cpu_mean} %, 10 s rolling p90 {during_load.cpu_p90_10s} %, "
        f"peak sample {during_load.cpu_peak} %.",
        "",
        J.network_line(whole, target.kind),
    ]
    if watch:
        md.append(
            f"Training `{watch.preset}` under load: {watch.seconds} s, state {watch.job.get('state')}; peak memory "
            f"during it {during_train and during_train.memory_peak_bytes and during_train.memory_peak_bytes / 2**30:.3f} GB."
        )
        lat = J.during(result, J.RULES, watch.started_at, watch.ended_at)
        if lat:
            md.append(
                f"Rules evaluation while training: {len(lat)} requests, p50 {exact_percentile(lat, 0.5) * 1000:.0f} ms, "
                f"p95 {exact_percentile(lat, 0.95) * 1000:.0f} ms."
            )
    return [*md, "", "![memory, CPU and latency over time](resources.png)", "", "[locust's HTML report](locust.html)"]


def _judge_load_run(run: LoadRun, target, p: dict, gate) -> None:
    """The verdicts, soft: every criterion is recorded, the test fails at its end with all failures listed."""
    whole, during_load = run.sampler.summary(), run.sampler.summary(*run.windows()[0])
    J.judge_load(gate, run.result, p["budget"], p["generations"])
    J.judge_resources(gate, whole, during_load)
    J.judge_network(gate, whole, target.kind)
    if run.watch:
        J.judge_training(gate, run.watch, run.result)
    helpers = [("sampler", run.sampler.cpu_seconds, run.sampler.wall_s)]
    if run.watch and run.watch.seconds:
        helpers.append(("training poller", run.watch.cpu_seconds, run.watch.seconds))
    J.judge_overhead(gate, run.result, helpers)


def test_distributed_load_keeps_the_exact_budget(subject, target, perf_ready, gate, perf_params, report_dir):
    """The same locustfile as a locust master + 2 worker processes on this machine, small budget:
    every request of the budget sent, none more, both workers sending."""
    budget = 24
    spec = LoadSpec(
        base_url=target.base_url,
        out_dir=report_dir / "distributed",
        budget=budget,
        users=4,
        spawn_rate=4,
        workers=2,
        max_seconds=120,
        think_scale=0.3,
        user_classes=["ProbeUser", "VisitorUser", "EvaluatorUser"],
    )
    result = run_load(spec, say=print)
    pids = {p.name.split(".")[1] for p in spec.out_dir.glob("requests.*.jsonl") if p.stat().st_size}
    gate.attach(spec.out_dir / "locust.html", "perf: distributed run, locust's HTML report")
    gate.measure(
        "perf.requests_over_budget",
        max(0, result.sent - budget),
        detail=f"distributed: master + 2 workers sent {result.sent} of {budget}; requests from {len(pids)} worker process(es)",
    )
    assert result.exit_codes and all(c in (0, 1) for c in result.exit_codes), (result.exit_codes, result.log_tail)
    assert result.sent == budget, f"sent {result.sent}, budget {budget}\n{result.log_tail}"
    assert len(pids) == 2, f"requests came from {len(pids)} worker process(es), expected 2"
    assert result.total.failures == 0, result.errors


def test_target_runs_the_expected_build(subject, gate, http, expected_build):
    """GET /health names the build the gate expects (production: the commit the workflow gated)."""
    from validation import checks

    checks.build(http, gate, *expected_build)


def test_no_errors_in_the_app_log(target, gate):
    """After the load and training: no ERROR/CRITICAL/Traceback lines in the app's log."""
    from validation import checks

    gate.require("container.log_errors")
    checks.log_errors(gate, target.logs(), source=f"{target.kind} log")


def test_dynamic_batching_speedup(subject, target, perf_ready, gate, perf_params):
    """Generation throughput, tokens per second, of 10 requests sent at once vs the same requests one
    at a time (greedy, base model only): concurrent requests must share forward passes."""
    from concurrent.futures import ThreadPoolExecutor

    users, tokens = int(perf_params["users"]), 32
    http = api.Client(base_url=target.base_url, auth=subject["auth"], timeout=300)

    def ask(i: int) -> tuple[int, int]:
        body = {"prompt": f"Give me tip number {i + 1} for a calm morning.", "max_new_tokens": tokens,
                "temperature": 0.0, "seed": i, "compare": False}
        r = http.post("/api/generate", json=body)
        r.raise_for_status()
        base = r.json()["base"]
        return int(base.get("tokens") or 0), int(base.get("batch_size") or 1)

    with CLOCK.spent("app"):
        ask(0)  # warm
        t0 = time.perf_counter()
        alone = [ask(i) for i in range(users)]  # the same requests, one at a time (3 were too few: noisy)
        t_alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(users) as pool:
            together = list(pool.map(ask, range(users)))
        t_together = time.perf_counter() - t0
    J.judge_batching(gate, alone, t_alone, together, t_together)


def test_quick_demo_training_time(subject, target, perf_ready, gate, perf_params):
    """train.quick_time: the plan's Quick Demo. Measured by the load test when the profile trains
    `quick` under load (bench, --perf-train-preset quick); otherwise `quick` runs here, after the load,
    on the profile's `behaviour_model` (the real model: the run the behaviour criteria then measure)."""
    if perf_params["train_preset"] == "quick":
        measured = [r for r in gate.recorder.results if r.id == "train.quick_time"]
        assert measured, "the load test did not measure train.quick_time (did it fail before training ended?)"
        return
    limit = float(gate.threshold("train.quick_time"))
    http = api.Client(base_url=target.base_url, auth=subject["auth"], timeout=600)
    _ensure_model(http, gate, str(gate.param("behaviour_model")), {})
    watch = J.TrainingWatch(target.base_url, "quick", limit_s=limit + 30, auth=subject["auth"]).start()
    watch.wait(watch.limit_s + 60)
    watch.close()
    J.judge_training(gate, watch, None)
    gate.raise_pending()


def test_behaviour_after_quick(subject, target, perf_ready, gate, perf_params, report_dir):
    """What the demo demonstrates, measured from outside after the `quick` run (under load or after it):
    POST /api/impact answers three held-out sets with base and trained (greedy); the gate recomputes
    every rate and its paired interval from the report's rows and judges harm, over-refusal,
    helpfulness and relevance on the intervals (validation/perf/behaviour.py). Profiles with several
    `behaviour_seeds` train `quick` again for each further seed."""
    http = api.Client(base_url=target.base_url, auth=subject["auth"], timeout=60)
    last = (http.get("/api/train").json() or {}).get("last") or {}
    if last.get("preset") != "quick" or last.get("state") != "succeeded":
        pytest.fail(f"no succeeded `quick` run to measure (last job: {last.get('preset')} {last.get('state')})",
                    pytrace=False)
    tokens = int(gate.param("behaviour_max_new_tokens"))
    jobs, reports = [last], [_impact(http, tokens)]
    wanted = [int(s) for s in gate.param("behaviour_seeds")]
    for seed in [s for s in wanted if s != last.get("seed")][: len(wanted) - 1]:
        with CLOCK.spent("app"):
            job = api.start_training(http, "quick", seed=seed, timeout=float(gate.threshold("train.quick_time")) + 60)
        if job.get("state") != "succeeded":
            pytest.fail(f"`quick` with seed {seed} ended {job.get('state')}: {job.get('error')}", pytrace=False)
        jobs.append(job)
        reports.append(_impact(http, tokens))
    seeds = [j.get("seed") for j in jobs]
    (report_dir / "impact.json").write_text(json.dumps(reports if len(reports) > 1 else reports[0], indent=1) + "\n")
    gate.attach(report_dir / "impact.json", "perf: impact of the quick run(s) on the held-out sets (JSON)")
    figures = B.judge(gate, reports, seeds)
    (report_dir / "behaviour.json").write_text(json.dumps({"seeds": seeds, "criteria": figures}, indent=1) + "\n")
    m = last.get("metrics") or {}
    revisions = m.get("revisions") or 0
    gate.measure(
        "behaviour.revisions_better",
        round(100 * m.get("revisions_better", 0) / revisions, 1) if revisions else 0.0,
        detail=f"{m.get('revisions_better')} of {revisions} better, {m.get('revisions_worse')} worse; training data: "
        f"{m.get('red_team_examples')} red-team targets ({m.get('refusal_targets')} reasoned declines), "
        f"{m.get('helpful_examples')} helpful targets",
        soft=True,
    )
    gate.raise_pending()


def _impact(http: httpx.Client, tokens: int) -> dict:
    with CLOCK.spent("app"):
        r = http.post("/api/impact", json={"max_new_tokens": tokens, "seed": 0}, timeout=900)
    if r.status_code != 200:
        pytest.fail(f"POST /api/impact -> {r.status_code} {r.text[:200]}", pytrace=False)
    return r.json()


def test_disk_used_at_the_end(subject, target, gate):
    """perf.disk_used, last in the session (after the load's training and `quick` wrote their runs): what
    the deployment occupies on disk, counted per target (the target's `disk_usage`: container = image +
    writable layer + volumes; process = data folders + model cache; url = the checkpoint volume, /metrics)."""
    J.judge_disk(gate, target.disk_usage())
