"""Effect checks of the UI's controls: each control's value reaches the action it feeds, seen through
the Gradio API (gradio_client calls the very handlers the controls call, with the controls' values),
compared with the JSON API's answer to the same request.

UI_EFFECTS names, for each control of the page (app/elements.py), the criterion that proves its
effect; tests/test_effect_inventory.py fails when a control has none. Controls with no Gradio API
(example pickers, Stop) and the action buttons are proven in the browser by the e2e journey.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from app import elements as E
from validation import api
from validation.checks.actions import ui_verdict
from validation.checks.common import _json, _short
from validation.checks.effects import JUDGE_ONLY, LONG_PROMPT, OTHER_PROMPT, RULES_ONLY, _ask, _text, _verdict, words
from validation.gate import CLOCK, Gate

UI_EFFECTS: dict[str, str] = {
    E.MODEL_SELECT: "effect.ui_model_select",
    E.MODEL_LOAD: "e2e.model_load_time",
    E.EVAL_TEXT: "gradio_api.evaluate",
    E.EVAL_MODE: "effect.ui_evaluate_mode",
    E.EVAL_EXAMPLE: "e2e.ui_examples",
    E.EVAL_BUTTON: "e2e.evaluate_verdicts",
    E.TRAIN_PRESET: "effect.ui_training",
    E.TRAIN_START: "e2e.train_progress",
    E.TRAIN_CANCEL: "effect.ui_training",
    E.GEN_PROMPT: "effect.ui_generate",
    E.GEN_ADVERSARIAL: "e2e.ui_examples",
    E.GEN_TEMPERATURE: "effect.ui_generate",
    E.GEN_MAX_TOKENS: "effect.ui_generate",
    E.GEN_BUTTON: "e2e.generate_verdicts",
    E.GEN_STOP: "e2e.generate_stop",
    E.CRITIQUE_PROMPT: "effect.ui_critique",
    E.CRITIQUE_EXAMPLE: "e2e.ui_examples",
    E.CRITIQUE_BUTTON: "e2e.critique_trace",
    E.IMPACT_LIMIT: "effect.ui_impact_limit",
    E.IMPACT_BUTTON: "e2e.impact_time",
    E.RUNS_REFRESH: "train.checkpoint",
}
STEPS = re.compile(r"step \d+/(\d+)")


@contextmanager
def gradio(base_url: str, gate: Gate, cid: str, auth: tuple[str, str] | None = None) -> Iterator[Any]:
    """A gradio_client Client of the app's UI; its calls are the app's time in the session's clock."""
    from gradio_client import Client

    with CLOCK.spent("app"):
        try:
            client = Client(base_url + "/", auth=auth, verbose=False, download_files=False)
        except Exception as exc:  # noqa: BLE001
            gate.fail(cid, False, f"gradio_client could not connect: {type(exc).__name__}: {_short(str(exc))}")
        yield client


def _predict(client, gate: Gate, cid: str, *args, api_name: str) -> Any:
    try:
        return client.predict(*args, api_name=f"/{api_name}")
    except Exception as exc:  # noqa: BLE001
        gate.fail(cid, False, f"predict(/{api_name}, {args}): {type(exc).__name__}: {_short(str(exc))}")


def generate(client, http: httpx.Client, gate: Gate) -> None:
    """The UI's greedy answer is the JSON API's for the same prompt and token limit (both with compare,
    as the UI asks, so both decode the same rows together), a larger limit gives more words, and a high
    temperature another text."""
    cid = "effect.ui_generate"
    problems = []
    ui = {}
    for prompt, temperature, tokens in ((LONG_PROMPT, 0.0, 8), (OTHER_PROMPT, 0.0, 8), (LONG_PROMPT, 0.0, 32),
                                        (LONG_PROMPT, 1.5, 8)):
        out = _predict(client, gate, cid, prompt, temperature, tokens, api_name=E.API_GENERATE)
        ui[(prompt, temperature, tokens)] = out[0] if isinstance(out, (list, tuple)) else out
    for prompt in (LONG_PROMPT, OTHER_PROMPT):
        expected = _text(_ask(http, gate, cid, prompt, tokens=8, compare=True))  # as the UI asks
        if ui[(prompt, 0.0, 8)] != expected:
            problems.append(f"UI {prompt[:30]!r}, temperature 0, 8 tokens: {_short(ui[(prompt, 0.0, 8)], 50)!r}; "
                            f"the JSON API: {_short(expected, 50)!r}")
    if words(ui[(LONG_PROMPT, 0.0, 32)]) <= words(ui[(LONG_PROMPT, 0.0, 8)]):
        problems.append(f"max tokens 32 gave {words(ui[(LONG_PROMPT, 0.0, 32)])} words, "
                        f"8 gave {words(ui[(LONG_PROMPT, 0.0, 8)])}")
    if ui[(LONG_PROMPT, 1.5, 8)] == ui[(LONG_PROMPT, 0.0, 8)]:
        problems.append(f"temperature 1.5 answers as temperature 0: {_short(ui[(LONG_PROMPT, 0.0, 8)], 50)!r}")
    _verdict(gate, cid, problems, "prompt, temperature and max tokens reach the model as the JSON API's fields do")


def evaluate_mode(client, gate: Gate) -> None:
    """The mode radio: each mode's UI verdict on the text only it flags, and on the other's."""
    cid = "effect.ui_evaluate_mode"
    expected = {("rules", RULES_ONLY): True, ("rules", JUDGE_ONLY): False, ("judge", RULES_ONLY): False,
                ("judge", JUDGE_ONLY): True}
    problems = []
    for (mode, text), flagged in expected.items():
        shown = ui_verdict(_predict(client, gate, cid, text, mode, api_name=E.API_EVALUATE))
        if not shown or shown[0] is not flagged:
            problems.append(f"mode {mode} on {_short(text, 40)!r}: UI verdict {shown} (expected flagged={flagged})")
    _verdict(gate, cid, problems, "rules flag only the rules' text, the judge only the judge's")


def training(client, http: httpx.Client, gate: Gate, preset: str = "quick") -> None:
    """The preset radio and Cancel: the UI starts the preset chosen (the job says so, with that
    preset's plan) and Cancel ends it cancelled."""
    cid = "effect.ui_training"
    out = _predict(client, gate, cid, preset, api_name=E.API_START_TRAINING)
    jobs = _json(http.get("/api/train", timeout=10)) or {}
    job = jobs.get("active") or jobs.get("last") or {}
    _predict(client, gate, cid, api_name=E.API_CANCEL_TRAINING)
    try:
        final = api.poll_job(http, job.get("job_id", "none"), timeout=120)
    except api.JobPollError as exc:
        gate.fail(cid, False, str(exc))
    status = out[0] if isinstance(out, (list, tuple)) else str(out)
    problems = [] if job.get("preset") == preset else [f"the UI started {job.get('preset')!r}, the radio said {preset!r}"]
    m = STEPS.search(status or "")
    if not m or int(m.group(1)) != job.get("total_steps"):
        problems.append(f"UI status {_short(status, 60)!r}, the job plans {job.get('total_steps')} steps")
    if final.get("state") != "cancelled":
        problems.append(f"after Cancel the job ended {final.get('state')!r}")
    _verdict(gate, cid, problems, f"{preset}: {job.get('total_steps')} steps planned, then cancelled")


def critique(client, gate: Gate) -> None:
    cid = "effect.ui_critique"
    shown = str(_predict(client, gate, cid, OTHER_PROMPT, api_name=E.API_CRITIQUE))
    problems = [] if html.escape(OTHER_PROMPT) in shown else [f"the trace does not show the prompt: {_short(shown, 80)!r}"]
    _verdict(gate, cid, problems, "the trace is of the prompt typed")


def impact_limit(client, gate: Gate, limit: int = 2) -> None:
    cid = "effect.ui_impact_limit"
    out = _predict(client, gate, cid, limit, api_name=E.API_IMPACT)
    summary = out[0] if isinstance(out, (list, tuple)) else str(out)
    want = f"{3 * limit} prompts ({limit} red-team, {limit} safe, {limit} ordinary)"
    _verdict(gate, cid, [] if summary.startswith(want) else [f"limit {limit}: {_short(summary, 80)!r}"], want)


def model_select(client, http: httpx.Client, gate: Gate, other: str = "tiny") -> None:
    cid = "effect.ui_model_select"
    before = ((_json(http.get("/api/models", timeout=10)) or {}).get("current") or {}).get("name")
    try:
        status = str(_predict(client, gate, cid, other, api_name=E.API_LOAD_MODEL))
        now = ((_json(http.get("/api/models", timeout=10)) or {}).get("current") or {}).get("name")
    finally:
        http.post("/api/models/load", json={"model": before}, timeout=300)
    problems = [] if now == other and other in status else [f"chose {other!r}: UI status {_short(status, 60)!r}, loaded {now!r}"]
    _verdict(gate, cid, problems, f"{before} -> {other} chosen in the UI, loaded; then {before} again")
