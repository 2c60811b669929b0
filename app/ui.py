"""The Gradio UI: a model panel and tabs for Evaluation, Training, Generation, Impact and Runs.

Every control and output has a stable ``elem_id`` and every action an ``api_name`` (both from
app/elements.py). User text and model output are shown in text boxes or escaped HTML, never as
raw HTML. Errors reach the user as a message (gr.Error), never as a traceback. A page load and each
action mark the Gradio session active (app/metrics.py counts sessions; Gradio injects gr.Request).
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from pydantic import BaseModel, ValidationError

from app import constitution, metrics, schemas
from app import elements as E
from app.errors import ApiError
from app.models import REGISTRY
from app.schemas import DEFAULT_TOKENS
from app.training import FINAL_STATES, PRESETS

INTRO = """# Constitutional AI demo
Evaluate text against a four-principle constitution, watch a model critique and revise its own
answer to a harmful request (SL-CAI), fine-tune it on its revisions (LoRA), and compare the base and
trained models on held-out red-team prompts. Load **smollm2** (SmolLM2-135M-Instruct), a real
instruction-tuned model of 135 million parameters running on CPU: it often complies with harmful
requests, and its critiques and revisions are weak but real, which is the honest picture of CAI at
this scale (the paper used models a thousand times larger). `tiny` is a 1.3M-parameter test model
whose output is word salad. Verdicts come from rules and an
independent sentence-embedding judge, never from the model being trained."""


def _user_errors(fn):
    """A UI action: its session counts as active, and an ApiError becomes a Gradio message the UI
    shows (and gradio_client raises). Generator functions (streaming outputs) stay generators."""
    def shown(exc: ApiError) -> gr.Error:
        # Gradio shows this message as HTML in a toast: escape the user input it may echo.
        named = not exc.field or exc.message.startswith(f"{exc.field}:")
        message = exc.message if named else f"{exc.field}: {exc.message}"
        return gr.Error(html.escape(message, quote=False))

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            _active(args, kwargs)
            try:
                yield from fn(*args, **kwargs)
            except ApiError as exc:
                raise shown(exc) from None
            except ValidationError as exc:
                raise shown(schemas.invalid(exc.errors())) from None
        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _active(args, kwargs)
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            raise shown(exc) from None
        except ValidationError as exc:
            raise shown(schemas.invalid(exc.errors())) from None
    return wrapper


def _request(kind: type[BaseModel], /, **fields: Any) -> BaseModel:
    """A control's inputs as its action's request, validated as the HTTP route validates its body."""
    return kind.model_validate(fields)


def _active(args: tuple, kwargs: dict) -> None:
    """Mark the caller's session active. Gradio passes the gr.Request that a handler's signature asks
    for (functools.wraps keeps it visible); its session hash is only a key in memory (app/metrics.py
    SessionTracker), never exported."""
    request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
    metrics.SESSIONS.seen(getattr(request, "session_hash", None))


def _model_status(service) -> str:
    if service.base is None:
        detail = f" — {service.model_error}" if service.model_error else ""
        return f"{service.model_state}{detail}"
    info = service.base.info()
    text = (f"ready: {info['name']} · {info['parameters']:,} parameters · {info['device']} · "
            f"{info['weights']} weights on {info['engine']} · "
            f"loaded in {info['load_seconds']:.2f} s")
    if service.trained_run:
        text += f" · trained run {service.trained_run}"
    return text


def _verdict(result: dict) -> str:
    if not result["flagged"]:
        head = "Not flagged"
    else:
        head = "Flagged: " + ", ".join(result["flagged_principles"])
    return f"{head} · alignment {result['alignment_score']:.2f} · {result['elapsed_s'] * 1000:.0f} ms"


def _cards(result: dict) -> str:
    rows = []
    for p in result["principles"]:
        evidence = "; ".join(html.escape(str(e)) for e in p.get("evidence") or []) or "—"
        state = "flagged" if p["flagged"] else "ok"
        rows.append(f"<div class='card {state}'><b>{html.escape(p['name'])}</b> (weight {p['weight']}) — "
                    f"<span class='verdict'>{state}</span>, score {p['score']:.2f}<br><small>{evidence}</small></div>")
    agreement = result.get("agreement")
    extra = f"<p>Rules and judge agree on {agreement:.0%} of principles.</p>" if agreement is not None else ""
    return "".join(rows) + extra


def _progress_html(job: dict | None) -> str:
    pct = 100 * (job["progress"] if job else 0)
    return (f"<progress max='100' value='{pct:.0f}' aria-label='training progress'></progress> "
            f"<span class='pct'>{pct:.0f}%</span>")


def _one_trace_html(t: dict) -> str:
    rounds = "".join(
        f"<li><b>{html.escape(r['principle'])}</b><br><i>Critique request:</i> {html.escape(r['critique_request'])}"
        f"<br><i>Critique:</i> {html.escape(r['critique'])}<br><i>Revision request:</i> "
        f"{html.escape(r['revision_request'])}<br><i>Revision:</i> {html.escape(r['revision'])}</li>"
        for r in t["rounds"])
    judged = ""
    if t.get("judge"):
        j = t["judge"]
        judged = (f"<p class='judge'>Judge: revision <b>{html.escape(j['verdict'])}</b> than the answer "
                  f"(alignment {j['answer_alignment']:.2f} → {j['revision_alignment']:.2f})</p>")
    return (f"<div class='trace'><b>User:</b> {html.escape(t['prompt'])}<br><b>Answer:</b> "
            f"{html.escape(t['answer'])}<ol>{rounds}</ol>{judged}</div>")


def _trace_html(job: dict | None) -> str:
    if not job or not job["trace"]:
        return "<p>No trace yet.</p>"
    return "".join(_one_trace_html(t) for t in job["trace"][-5:])


def _status_line(job: dict | None) -> str:
    if not job:
        return "idle"
    text = f"{job['state']} · {job['phase']} · step {job['step']}/{job['total_steps']}"
    if job.get("loss") is not None:
        text += f" · loss {job['loss']:.3f}"
    if job.get("eta_s") is not None:
        text += f" · ETA {job['eta_s']:.0f} s"
    if job.get("error"):
        text += f" · {job['error']}"
    m = job.get("metrics") or {}
    if "revisions" in m:
        text += (f" · judge: {m['revisions_better']}/{m['revisions']} revisions better, "
                 f"{m['revisions_worse']} worse ({m['revisions_dropped']} dropped)")
    return text


def _loss_frame(job: dict | None) -> pd.DataFrame:
    return pd.DataFrame((job or {}).get("losses") or [], columns=["step", "loss"])


def _headline_frame(report: dict) -> pd.DataFrame:
    rows = [{"side": side.replace("_", "-"), "set": h["set"].replace("_", "-"), "measure": h["measure"].replace("_", " "),
             "base": h["before"], "trained": h["after"], "change": h["change"],
             "95 % CI": f"{h['ci95'][0]:+} to {h['ci95'][1]:+}", "McNemar p": h.get("p", ""),
             "significant": "yes" if h["significant"] else "no"} for side, h in report["headline"].items()]
    return pd.DataFrame(rows)


def build_ui(service) -> gr.Blocks:
    """The demo's page: the model row, then a tab per action, each wired to the service."""
    R = service.requests
    rng = random.Random(service.settings.seed)
    with gr.Blocks(title="Constitutional AI demo") as demo:
        gr.Markdown(INTRO)
        model_status = _model_row(service, R)
        _evaluation_tab(service, R)
        job_views, job_outputs, current_job = _training_tab(service, R, model_status)
        _generation_tab(service, R, rng)
        _critique_tab(service, R, rng)
        _impact_tab(service, R)
        runs_table, list_runs = _runs_tab(service)

        @_user_errors
        def on_page_load(request: gr.Request):
            return (*job_outputs(current_job()), list_runs())

        def on_tab_closed(request: gr.Request):
            metrics.SESSIONS.end(request.session_hash)

        demo.load(on_page_load, None, [*job_views, runs_table], api_visibility="private")
        demo.unload(on_tab_closed)
    return demo


def _model_row(service, R):
    with gr.Row():
        model_select = gr.Dropdown(list(REGISTRY), value=service.settings.default_model, label="Model",
                                   allow_custom_value=True, elem_id=E.MODEL_SELECT, scale=2)
        model_load = gr.Button("Load model", variant="primary", elem_id=E.MODEL_LOAD, scale=1)
        model_status = gr.Textbox(label="Model status", interactive=False, elem_id=E.MODEL_STATUS, scale=4)

    @_user_errors
    def load_model(name, request: gr.Request):
        service.load_model(_request(R.LoadModelRequest, model=name))
        return _model_status(service)

    model_load.click(load_model, model_select, model_status, api_name=E.API_LOAD_MODEL)
    return model_status


def _evaluation_tab(service, R) -> None:
    example_text = {e["label"]: e["text"] for e in constitution.ui_examples()}
    with gr.Tab("Evaluation", elem_id=E.TAB_EVALUATE):
        eval_example = gr.Dropdown(list(example_text), label="Example", value=None, elem_id=E.EVAL_EXAMPLE)
        eval_text = gr.Textbox(label="Text to evaluate", lines=5, elem_id=E.EVAL_TEXT)
        eval_mode = gr.Radio(["rules", "judge", "both"], value="rules", label="Mode", elem_id=E.EVAL_MODE)
        eval_button = gr.Button("Evaluate", variant="primary", elem_id=E.EVAL_BUTTON)
        eval_verdict = gr.Textbox(label="Verdict", interactive=False, elem_id=E.EVAL_VERDICT)
        eval_result = gr.HTML(elem_id=E.EVAL_RESULT)

    @_user_errors
    def evaluate(text, mode, request: gr.Request):
        result = service.evaluate(_request(R.EvaluateRequest, text=text, mode=mode))
        return _verdict(result), _cards(result)

    eval_example.change(lambda label: example_text.get(label, ""), eval_example, eval_text,
                        api_visibility="private", queue=False)
    eval_button.click(evaluate, [eval_text, eval_mode], [eval_verdict, eval_result], api_name=E.API_EVALUATE)


def _training_tab(service, R, model_status):
    """The Training tab; returns its views, how a job fills them, and the job to show."""
    with gr.Tab("Training", elem_id=E.TAB_TRAIN):
        gr.Markdown("Each prompt: answer → critique → revision (SL-CAI), then fine-tuning on the revisions.")
        with gr.Row():
            train_preset = gr.Radio(list(PRESETS), value="quick", label="Preset", elem_id=E.TRAIN_PRESET,
                                    info=" · ".join(f"{p.name}: {p.description}" for p in PRESETS.values()))
            train_start = gr.Button("Start training", variant="primary", elem_id=E.TRAIN_START)
            train_cancel = gr.Button("Cancel training", variant="stop", elem_id=E.TRAIN_CANCEL)
        train_status = gr.Textbox(label="Training status", interactive=False, elem_id=E.TRAIN_STATUS)
        train_progress = gr.HTML(_progress_html(None), elem_id=E.TRAIN_PROGRESS)
        train_checkpoint = gr.Textbox(label="Checkpoint", interactive=False, elem_id=E.TRAIN_CHECKPOINT)
        train_loss = gr.LinePlot(_loss_frame(None), x="step", y="loss", label="Loss", elem_id=E.TRAIN_LOSS)
        train_trace = gr.HTML(_trace_html(None), elem_id=E.TRAIN_TRACE)
        timer = gr.Timer(0.5, active=False)  # only while a job runs

    def current_job():
        jobs = service.jobs()
        return jobs["active"] or jobs["last"]

    def job_outputs(job):
        active = bool(job) and job["state"] not in FINAL_STATES
        return (_status_line(job), _progress_html(job), (job or {}).get("checkpoint") or "",
                _loss_frame(job), _trace_html(job), gr.Timer(active=active), _model_status(service))

    # model_status too: it names the trained run once a job succeeds
    job_views = [train_status, train_progress, train_checkpoint, train_loss, train_trace, timer, model_status]

    @_user_errors
    def start_training(preset, request: gr.Request):
        return job_outputs(service.start_training(_request(R.TrainRequest, preset=preset)))

    @_user_errors  # a user watching a run is active
    def training_status(request: gr.Request):
        return job_outputs(current_job())

    @_user_errors
    def cancel_training(request: gr.Request):
        job = current_job()
        if job is None:
            raise ApiError(409, None, "no training job to cancel", error="no_job")
        return job_outputs(service.cancel(job["job_id"]))

    train_start.click(start_training, train_preset, job_views, api_name=E.API_START_TRAINING)
    train_cancel.click(cancel_training, None, job_views, api_name=E.API_CANCEL_TRAINING)
    timer.tick(training_status, None, job_views, api_name=E.API_TRAINING_STATUS, show_progress="hidden")
    return job_views, job_outputs, current_job


def _generation_tab(service, R, rng: random.Random) -> None:
    adversarial = [p["prompt"] for p in constitution.adversarial_prompts()]
    with gr.Tab("Generation", elem_id=E.TAB_GENERATE):
        gen_prompt = gr.Textbox(label="Prompt", lines=3, elem_id=E.GEN_PROMPT)
        with gr.Row():
            gen_adversarial = gr.Button("Load adversarial prompt", elem_id=E.GEN_ADVERSARIAL)
            gen_temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.1, label="Temperature (0 = greedy)",
                                        elem_id=E.GEN_TEMPERATURE)
            gen_max_tokens = gr.Slider(8, 256, value=DEFAULT_TOKENS, step=8, label="Max new tokens",
                                       elem_id=E.GEN_MAX_TOKENS)
        with gr.Row():
            gen_button = gr.Button("Generate from both models", variant="primary", elem_id=E.GEN_BUTTON)
            gen_stop = gr.Button("Stop", variant="stop", elem_id=E.GEN_STOP)
        with gr.Row():
            with gr.Column():
                gen_base = gr.Textbox(label="Base model", interactive=False, lines=5, elem_id=E.GEN_BASE)
                gen_base_eval = gr.Textbox(label="Base model verdict", interactive=False, elem_id=E.GEN_BASE_EVAL)
            with gr.Column():
                gen_trained = gr.Textbox(label="Trained model", interactive=False, lines=5, elem_id=E.GEN_TRAINED)
                gen_trained_eval = gr.Textbox(label="Trained model verdict", interactive=False,
                                              elem_id=E.GEN_TRAINED_EVAL)

    @_user_errors
    def generate(prompt, temperature, max_new_tokens, request: gr.Request):
        # Streams: tokens appear as the models produce them; verdicts once both are done.
        req = _request(R.GenerateRequest, prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature)
        for out in service.generate_stream(req):
            if not out["done"]:
                yield out["base"], "", out.get("trained", ""), ""
                continue
            trained = out.get("trained")
            yield (out["base"]["text"], _verdict(out["base"]["evaluation"]),
                   trained["text"] if trained else "",
                   _verdict(trained["evaluation"]) if trained else "No trained model yet: run a training job first.")

    gen_adversarial.click(lambda: rng.choice(adversarial), None, gen_prompt, api_visibility="private", queue=False)
    gen_event = gen_button.click(generate, [gen_prompt, gen_temperature, gen_max_tokens],
                                 [gen_base, gen_base_eval, gen_trained, gen_trained_eval], api_name=E.API_GENERATE)
    gen_stop.click(None, None, None, cancels=[gen_event], api_visibility="private", queue=False)


def _critique_tab(service, R, rng: random.Random) -> None:
    with gr.Tab("Critique and revise", elem_id=E.TAB_CRITIQUE):
        gr.Markdown("One SL-CAI trace on demand, without training: the loaded model answers, critiques its "
                    "answer against a principle of the constitution, and revises it; the independent judge "
                    "says whether the revision is better.")
        critique_prompt = gr.Textbox(label="Prompt to critique and revise", lines=2, elem_id=E.CRITIQUE_PROMPT)
        with gr.Row():
            critique_adversarial = gr.Button("Load a red-team training prompt", elem_id=E.CRITIQUE_EXAMPLE)
            critique_button = gr.Button("Critique and revise", variant="primary", elem_id=E.CRITIQUE_BUTTON)
        critique_result = gr.HTML(elem_id=E.CRITIQUE_RESULT)

    @_user_errors
    def critique(prompt, request: gr.Request):
        return _one_trace_html(service.critique(_request(R.CritiqueRequest, prompt=prompt)))

    red_team = [p["prompt"] for p in constitution.training_prompts()]
    critique_adversarial.click(lambda: rng.choice(red_team), None, critique_prompt, api_visibility="private",
                               queue=False)
    critique_button.click(critique, critique_prompt, critique_result, api_name=E.API_CRITIQUE)


def _impact_tab(service, R) -> None:
    largest_set = constitution.largest_eval_set()
    # made on the first analysis, so a UI built and never used (every test app) leaves no folder behind
    downloads = functools.cache(lambda: Path(tempfile.mkdtemp(prefix="cai-impact-")))
    with gr.Tab("Impact", elem_id=E.TAB_IMPACT):
        gr.Markdown("Base vs trained on three held-out sets (never trained on), greedy decoding: **harm** (flagged "
                    "answers to red-team prompts, rules + embedding judge), **over-refusal** (refusals of safe "
                    "prompts that sound alarming) and **helpfulness** (answers about the request instead of an "
                    "answer, and relevance, on everyday prompts). Each change with its paired 95 % interval.")
        impact_limit = gr.Slider(1, largest_set, value=8, step=1, label="Prompts per set", elem_id=E.IMPACT_LIMIT)
        impact_button = gr.Button("Run impact analysis", variant="primary", elem_id=E.IMPACT_BUTTON)
        impact_summary = gr.Textbox(label="Summary", interactive=False, lines=4, elem_id=E.IMPACT_SUMMARY)
        impact_table = gr.Dataframe(label="Harm, over-refusal and helpfulness: base -> trained", interactive=False,
                                    elem_id=E.IMPACT_TABLE)
        with gr.Row():
            impact_json = gr.File(label="Report (JSON)", elem_id=E.IMPACT_JSON)
            impact_csv = gr.File(label="Examples (CSV)", elem_id=E.IMPACT_CSV)

    @_user_errors
    def run_impact(limit, request: gr.Request):
        report = service.impact(_request(R.ImpactRequest, limit=limit))
        stem = downloads() / f"impact-{report['run_id']}"
        Path(f"{stem}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        Path(f"{stem}.csv").write_text(service.impact_file(report["run_id"], "csv"), encoding="utf-8")
        sets = ", ".join(f"{n} {name.replace('_', '-')}" for name, n in report["sets"].items())
        summary = (f"{report['prompts']} prompts ({sets}) · red-team alignment {report['before']['alignment']:.3f} "
                   f"→ {report['after']['alignment']:.3f}\n{report['verdict']}")
        return summary, _headline_frame(report), f"{stem}.json", f"{stem}.csv"

    impact_button.click(run_impact, impact_limit, [impact_summary, impact_table, impact_json, impact_csv],
                        api_name=E.API_IMPACT)


def _runs_tab(service):
    with gr.Tab("Runs", elem_id=E.TAB_RUNS):
        runs_refresh = gr.Button("Refresh", elem_id=E.RUNS_REFRESH)
        runs_table = gr.Dataframe(label="Runs on the checkpoint volume", interactive=False, elem_id=E.RUNS_TABLE)

    def list_runs():
        rows = [{"run_id": r["run_id"], "state": r.get("state"), "preset": r.get("preset"), "model": r.get("model"),
                 "created_at": r.get("created_at"), "total_s": (r.get("metrics") or {}).get("total_s"),
                 "trained": r.get("trained") or ""} for r in service.runs()["runs"]]
        return pd.DataFrame(rows, columns=["run_id", "state", "preset", "model", "created_at", "total_s", "trained"])

    runs_refresh.click(list_runs, None, runs_table, api_name=E.API_LIST_RUNS)
    return runs_table, list_runs
