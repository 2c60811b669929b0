"""Actions: load a model, evaluate (JSON and the Gradio API), train, cancel, generate, and the
checkpoint's effect."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx

from validation import api
from validation.checks.common import (
    HARMFUL_TEXT,
    HARMLESS_TEXT,
    _json,
    _short,
)
from validation.criteria import TRAINING_TIME
from validation.gate import CLOCK, Gate


def model_load(http: httpx.Client, gate: Gate, model: str) -> dict:
    t0 = time.perf_counter()
    r = http.post("/api/models/load", json={"model": model}, timeout=max(60, gate.threshold("model.load_time") * 2))
    elapsed = time.perf_counter() - t0
    body = _json(r) or {}
    if r.status_code != 200:
        gate.fail("model.load_time", round(elapsed, 3), f"POST /api/models/load -> {r.status_code} {_short(r.text)}")
    gate.measure(
        "model.load_time",
        round(elapsed, 3),
        detail=f"{model}: {body.get('parameters', '?')} parameters, app says {body.get('load_seconds', '?')} s",
    )
    return body


def _evaluate_once(http: httpx.Client, gate: Gate, text: str, mode: str = "rules") -> tuple[dict, float]:
    t0 = time.perf_counter()
    r = http.post("/api/evaluate", json={"text": text, "mode": mode}, timeout=60)
    elapsed = time.perf_counter() - t0
    body = _json(r)
    if r.status_code != 200 or not isinstance(body, dict) or "flagged" not in body:
        gate.fail("evaluate.time", round(elapsed, 4), f"POST /api/evaluate -> {r.status_code} {_short(r.text)}")
    return body, elapsed


def evaluate(http: httpx.Client, gate: Gate, harmful: str = HARMFUL_TEXT, harmless: str = HARMLESS_TEXT) -> None:
    _evaluate_once(http, gate, harmless)  # warm-up (first-request costs are not the evaluator's)
    bad, t_bad = _evaluate_once(http, gate, harmful)
    good, t_good = _evaluate_once(http, gate, harmless)
    gate.measure(
        "evaluate.time",
        round(max(t_bad, t_good), 4),
        detail=f"harmful {t_bad * 1000:.1f} ms, harmless {t_good * 1000:.1f} ms",
        soft=True,
    )
    flagged_bad = bool(bad.get("flagged")) and "harm_prevention" in bad.get("flagged_principles", [])
    gate.measure(
        "evaluate.harmful_flagged",
        flagged_bad,
        detail=f"flagged={bad.get('flagged')} principles={bad.get('flagged_principles')} text={_short(harmful, 60)!r}",
        soft=True,
    )
    gate.measure(
        "evaluate.harmless_clean",
        not good.get("flagged"),
        detail=f"flagged={good.get('flagged')} principles={good.get('flagged_principles')} text={_short(harmless, 60)!r}",
        soft=True,
    )
    gate.raise_pending()


# The UI's verdict line (app/ui.py _verdict): "Not flagged · ..." or "Flagged: a, b · ..."
UI_VERDICT = re.compile(r"^(?:Not flagged|Flagged: (?P<principles>[^·]+?)) ·")


def ui_verdict(result: Any) -> tuple[bool, list[str]] | None:
    """(flagged, principles) from the first output that is a verdict line; None when none is."""
    for out in result if isinstance(result, (list, tuple)) else [result]:
        m = UI_VERDICT.match(out.strip()) if isinstance(out, str) else None
        if m:
            names = [p.strip() for p in (m.group("principles") or "").split(",") if p.strip()]
            return m.group("principles") is not None, sorted(names)
    return None


def _gradio_args(params: list[dict], harmful: str) -> list[Any]:
    """Arguments for an evaluate endpoint from gradio_client's view_api: the text, rules mode, defaults."""
    args: list[Any] = []
    for p in params:
        name = (p.get("parameter_name") or p.get("label") or "").lower()
        if "mode" in name:
            args.append("rules")
        elif not args and p.get("python_type", {}).get("type") == "str":
            args.append(harmful)
        elif p.get("parameter_has_default"):
            args.append(p.get("parameter_default"))
        else:
            args.append(harmful if not args else None)
    return args


def gradio_evaluate(
    base_url: str,
    gate: Gate,
    api_name: str,
    expected: dict,
    auth: tuple[str, str] | None = None,
    harmful: str = HARMFUL_TEXT,
) -> Any:
    """The same action through the Gradio API (gradio_client), as a Python user of the Space would:
    its verdict must be the JSON API's (`expected`: POST /api/evaluate of the same text, rules mode),
    a flag naming exactly the same principles."""
    from gradio_client import Client

    with CLOCK.spent("app"):  # gradio_client's own HTTP client: the wait on the app is timed here
        try:
            client = Client(base_url + "/", auth=auth, verbose=False, download_files=False)
        except Exception as exc:  # noqa: BLE001
            gate.fail("gradio_api.evaluate", False, f"gradio_client could not connect: {type(exc).__name__}: {_short(str(exc))}")
        endpoint = f"/{api_name}"
        info = client.view_api(print_info=False, return_format="dict")
        args = _gradio_args(info.get("named_endpoints", {}).get(endpoint, {}).get("parameters", []), harmful)
        times = []
        for _ in range(2):  # the first call also opens the queue's event stream: gate the second
            t0 = time.perf_counter()
            try:
                result = client.predict(*args, api_name=endpoint)
            except Exception as exc:  # noqa: BLE001
                gate.fail("gradio_api.evaluate", False, f"predict({endpoint}): {type(exc).__name__}: {_short(str(exc))}")
            times.append(time.perf_counter() - t0)
    elapsed = times[-1]
    text = json.dumps(result, default=str)
    shown = ui_verdict(result)
    said = (bool(expected.get("flagged")), sorted(expected.get("flagged_principles") or []))
    gate.measure(
        "gradio_api.evaluate_time", round(elapsed, 3), detail=f"predict({endpoint}); first call {times[0]:.2f} s", soft=True
    )
    gate.measure(
        "gradio_api.evaluate",
        shown == said and said[0],
        detail=f"predict({endpoint}) -> {_short(text, 160)}; UI verdict {shown}, JSON API {said}",
        soft=True,
    )
    gate.raise_pending()
    return result


def train_cancel(http: httpx.Client, gate: Gate, preset: str = "smoke") -> None:
    """Start a run and cancel it at once: the job must end `cancelled` (not go on to succeed), and
    its run record on the volume must say cancelled with no trained checkpoint."""
    cid = "train.cancel"
    r = http.post("/api/train", json={"preset": preset}, timeout=30)
    if r.status_code != 202:
        gate.fail(cid, False, f"POST /api/train -> {r.status_code} {_short(r.text)}")
    job_id, run_id = r.json()["job_id"], r.json().get("run_id")
    c = http.post(f"/api/train/{job_id}/cancel", timeout=30)
    try:
        job = api.poll_job(http, job_id, timeout=120)
    except api.JobPollError as exc:
        gate.fail(cid, False, str(exc))
    run = http.get(f"/api/runs/{run_id}", timeout=30)
    record = _json(run) if run.status_code == 200 else {}
    problems = [f"cancel -> {c.status_code}"] if c.status_code not in (200, 202) else []
    if job.get("state") != "cancelled":
        problems.append(f"job ended {job.get('state')!r}")
    if record.get("state") != "cancelled" or record.get("trained"):
        problems.append(f"run record: GET /api/runs/{run_id} -> {run.status_code} state {record.get('state')!r}, "
                        f"trained {record.get('trained')!r}")
    gate.measure(cid, not problems, detail="; ".join(problems) or f"job {job_id} cancelled; run {run_id} cancelled, "
                 "no checkpoint", soft=True)


def _answer_problems(answer: Any) -> list[str]:
    """What is wrong with one generated answer of POST /api/generate (empty: nothing)."""
    if not isinstance(answer, dict):
        return ["not an object"]
    text, ev = answer.get("text"), answer.get("evaluation")
    problems = []
    if not isinstance(text, str) or not text.strip():
        problems.append(f"empty text ({text!r})")
    elif text.count("\ufffd") * 4 > len(text):
        problems.append("text does not decode (mostly U+FFFD)")
    if not isinstance(ev, dict) or not isinstance(ev.get("flagged"), bool) or not isinstance(
            ev.get("alignment_score"), (int, float)):
        problems.append(f"no verdict (flagged, alignment_score) in its evaluation: {_short(str(ev), 80)}")
    return problems


def generate(
    http: httpx.Client, gate: Gate, max_new_tokens: int = 64, prompt: str = "How do I make friends at a new school?"
) -> dict:
    """One cold request (its time is shown in the detail: it may load the judge model), then the
    gated warm one, both with `max_new_tokens` and compare=true."""
    payload = {"prompt": prompt, "max_new_tokens": max_new_tokens, "seed": 0, "compare": True}
    timeout = max(60, gate.threshold("generate.time") * 3)
    times, r = [], None
    for _ in range(2):
        t0 = time.perf_counter()
        r = http.post("/api/generate", json=payload, timeout=timeout)
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            break
    body = _json(r)
    answers = {k: body.get(k) for k in ("base", "trained") if isinstance(body, dict) and body.get(k) is not None}
    problems = [] if r.status_code == 200 and "base" in answers else [f"status {r.status_code}, no base answer"]
    for kind, answer in answers.items():
        problems += [f"{kind}: {p}" for p in _answer_problems(answer)]
    shown = "; ".join(f"{k}: {_short(str(a.get('text', '')), 80)!r}" for k, a in answers.items() if isinstance(a, dict))
    gate.measure("generate.valid", not problems,
                 detail=f"POST /api/generate -> {r.status_code}; {'; '.join(problems) or 'texts and verdicts'}; "
                 f"{shown or _short(r.text)}", soft=True)
    gate.measure(
        "generate.time",
        round(times[-1], 3),
        detail=f"{max_new_tokens} new tokens, compare=true; first (cold) request {times[0]:.2f} s",
        soft=True,
    )
    gate.raise_pending()
    return body


def training(
    http: httpx.Client,
    gate: Gate,
    preset: str,
    time_criterion: str | None = None,
    seed: int = 42,
    interval: float = 0.5,
    summary: bool = False,
) -> dict:
    """Start `preset`, poll GET /api/train/{id} to a final state, gate time, state and checkpoint
    (and with `summary`, train.summary_consistent)."""
    cid = time_criterion or TRAINING_TIME[preset]
    limit = float(gate.threshold(cid))
    t0 = time.monotonic()
    r = http.post("/api/train", json={"preset": preset, "seed": seed}, timeout=30)
    body = _json(r) or {}
    if r.status_code != 202 or "job_id" not in body:
        gate.fail("train.state", f"start refused ({r.status_code})", f"POST /api/train -> {_short(r.text)}")
    job_id = body["job_id"]
    try:
        job = api.poll_job(http, job_id, timeout=limit + min(10.0, 1 + limit * 0.1), interval=interval)
    except api.JobPollError as exc:
        gate.fail("train.state", f"status {exc.status}", str(exc))
    if job.get("state") not in api.FINAL_STATES:
        http.post(f"/api/train/{job_id}/cancel", timeout=10)
        gate.fail(
            cid,
            round(time.monotonic() - t0, 1),
            f"still {job.get('state')} ({job.get('phase')}, step {job.get('step')}/{job.get('total_steps')}) "
            "after the threshold; cancelled",
        )
    elapsed = round(time.monotonic() - t0, 2)
    gate.measure(
        "train.state",
        job.get("state"),
        detail=f"job {job_id}, run {job.get('run_id')}"
        + (f", error: {_short(job.get('error'), 160)}" if job.get("error") else ""),
        soft=True,
    )
    gate.measure(cid, elapsed, detail=f"{preset}: {job.get('total_steps', '?')} steps, final loss {job.get('loss')}", soft=True)
    runs = _json(http.get("/api/runs", timeout=10)) or {}
    listed = [x for x in runs.get("runs", []) if isinstance(x, dict) and x.get("run_id") == job.get("run_id")]
    has_ckpt = bool(job.get("checkpoint")) and bool(listed) and listed[0].get("trained") not in (None, "")
    if not has_ckpt:
        gate.measure(
            "train.checkpoint",
            False,
            detail=f"checkpoint={job.get('checkpoint')!r}, listed by /api/runs: {bool(listed)}"
            + (f", state there {listed[0].get('state')!r}" if listed else ""),
            soft=True,
        )
    else:
        checkpoint_effect(http, gate, job)
    if summary and job.get("state") == "succeeded":
        training_summary(http, gate, job)
    gate.raise_pending()
    return job


def summary_problems(job: dict, record: dict, listed: dict | None) -> list[str]:
    """Where a succeeded job's summary disagrees with its details (empty: none)."""
    m, trace = job.get("metrics") or {}, job.get("trace") or []
    verdicts = [(t.get("judge") or {}).get("verdict") for t in trace]
    counts = {"revisions": len(trace), "revisions_better": verdicts.count("better"),
              "revisions_same": verdicts.count("same"), "revisions_worse": verdicts.count("worse"),
              "revisions_flagged": sum(bool((t.get("judge") or {}).get("revision_flagged")) for t in trace)}
    problems = [f"metrics {k} {m.get(k)!r}, the trace gives {v}" for k, v in counts.items() if m.get(k) != v]
    config = record.get("preset_config") or {}
    epochs, batch = config.get("epochs"), config.get("batch_size")
    losses = [loss for _, loss in job.get("losses") or []]
    if not (epochs and batch and m.get("examples")):
        problems.append(f"cannot recompute the epochs' losses: preset_config {config!r}, examples {m.get('examples')!r}")
    else:
        per_epoch = -(-int(m["examples"]) // int(batch))
        means = [round(sum(chunk) / len(chunk), 4) for i in range(0, len(losses), per_epoch)
                 if (chunk := losses[i:i + per_epoch])]
        got = m.get("loss_per_epoch") or []
        if len(means) != epochs or len(got) != epochs or any(abs(a - b) > 1e-3 for a, b in zip(means, got)):
            problems.append(f"loss_per_epoch {got}, the {len(losses)} step losses give {means} over {epochs} epoch(s)")
    for key in ("state", "preset", "metrics"):
        if record.get(key) != job.get(key):
            problems.append(f"run record {key} {_short(str(record.get(key)), 60)}, job {_short(str(job.get(key)), 60)}")
    if listed is None:
        problems.append("the run is not in GET /api/runs")
    else:
        problems += [f"GET /api/runs lists {key} {listed.get(key)!r}, the run record {record.get(key)!r}"
                     for key in ("state", "trained") if listed.get(key) != record.get(key)]
    return problems


def training_summary(http: httpx.Client, gate: Gate, job: dict) -> None:
    """train.summary_consistent: the job's summary figures recomputed from its own details."""
    run_id = job.get("run_id")
    r = http.get(f"/api/runs/{run_id}", timeout=10)
    record = (_json(r) or {}) if r.status_code == 200 else {}
    runs = (_json(http.get("/api/runs", timeout=10)) or {}).get("runs", [])
    listed = next((x for x in runs if isinstance(x, dict) and x.get("run_id") == run_id), None)
    problems = ([f"GET /api/runs/{run_id} -> {r.status_code}"] if r.status_code != 200 else []) + \
        summary_problems(job, record, listed)
    gate.measure("train.summary_consistent", not problems, soft=True,
                 detail="; ".join(problems) or f"{len(job.get('trace') or [])} revisions, "
                 f"{len(job.get('losses') or [])} step losses, run record and runs list agree with job {job.get('job_id')}")


def runs_on_volume(http: httpx.Client, gate: Gate, checkpoint_dir) -> None:
    """train.runs_on_volume: GET /api/runs lists exactly the run folders on the checkpoint volume (each
    with its metadata.json), and names a trained checkpoint exactly where its adapter's weights are."""
    root = checkpoint_dir / "runs"
    folders = {d.name: d for d in root.iterdir() if (d / "metadata.json").is_file()} if root.is_dir() else {}
    listed = {r.get("run_id"): r for r in (_json(http.get("/api/runs", timeout=10)) or {}).get("runs", [])}
    gaps = {"listed, not on the volume": set(listed) - set(folders), "on the volume, not listed": set(folders) - set(listed)}
    problems = [f"{where}: {', '.join(sorted(ids))}" for where, ids in gaps.items() if ids]
    for run_id in set(listed) & set(folders):
        trained = listed[run_id].get("trained")
        weights = (folders[run_id] / str(trained) / "adapter_model.safetensors").is_file() if trained else False
        has_any = any(folders[run_id].glob("*/adapter_model.safetensors"))
        if bool(trained) != has_any or (trained and not weights):
            problems.append(f"{run_id}: listed trained {trained!r}, adapter weights on the volume: {has_any}")
    gate.measure("train.runs_on_volume", not problems, soft=True,
                 detail="; ".join(problems) or f"{len(listed)} runs listed, the same {len(folders)} folders on {root}")


EFFECT_PROMPT = "How can I get into my neighbour's garage without them knowing?"


def checkpoint_effect(http: httpx.Client, gate: Gate, job: dict, prompt: str = EFFECT_PROMPT) -> None:
    """`train.checkpoint`, by its effect: the trained model answers differently from the base on the
    same prompt and seed (greedy), the run's checkpoint loads (POST /api/models/load with its path),
    and the loaded checkpoint answers exactly as the trained model did. A run that names a checkpoint
    it never wrote, or one whose training changed nothing, fails here."""
    ask = {"prompt": prompt, "max_new_tokens": 32, "temperature": 0.0, "seed": 7, "compare": True}

    def answers(when: str) -> tuple[str | None, str | None, str]:
        r = http.post("/api/generate", json=ask, timeout=120)
        body = _json(r) or {}
        base, trained = (body.get(k) if isinstance(body.get(k), dict) else {} for k in ("base", "trained"))
        return base.get("text"), trained.get("text"), f"{when}: {r.status_code}, run {body.get('run_id')!r}"

    base1, trained1, note1 = answers("after training")
    path = job.get("checkpoint_path") or job.get("checkpoint")
    r = http.post("/api/models/load", json={"model": path}, timeout=120)
    loaded = (_json(r) or {}) if r.status_code == 200 else {}
    base2, trained2, note2 = answers("after loading the checkpoint") if loaded else (None, None, "not loaded")
    problems = []
    if trained1 is None:
        problems.append("no trained output after training")
    elif trained1 == base1:
        problems.append(f"trained output equals the base's: {_short(trained1, 80)!r}")
    if not loaded:
        problems.append(f"POST /api/models/load {path!r} -> {r.status_code} {_short(r.text, 120)}")
    elif loaded.get("trained_run") != job.get("run_id"):
        problems.append(f"loading {path!r} gave run {loaded.get('trained_run')!r}, not {job.get('run_id')!r}")
    elif trained2 != trained1:
        problems.append(f"the loaded checkpoint answers {_short(trained2, 60)!r}, training left {_short(trained1, 60)!r}")
    elif base2 != base1:
        problems.append("the base model answers differently after loading the checkpoint")
    gate.measure(
        "train.checkpoint",
        not problems,
        detail="; ".join(problems) if problems else
        f"{path}: loads, and its greedy output differs from the base's ({note1}; {note2})",
        soft=True,
    )
