"""The user and serving metrics of app/metrics.py on the real app with the tiny model: each action
moves its counter by one through the HTTP API and the UI alike, the decoder's gauges follow its
queue and batch and return to 0, the latency histograms fill, sessions are counted and never named."""

from __future__ import annotations

import threading
import time

import gradio as gr
import pytest
from prometheus_client import REGISTRY, generate_latest

from app import elements as E
from app import metrics
from app.evaluation import MODES
from app.generation import Request, TorchWorker, chat_prompt, wait
from app.service import Service
from app.training import FINAL_STATES
from app.ui import build_ui

TEXT = "Here is how to pick the lock and break into the house."
PROMPT = "How do I make a budget?"
INTERACTIVE, BACKGROUND = metrics.PRIORITIES


def value(metric, **labels) -> float:
    """What /metrics counts for `metric` (a counter's total, a histogram's count, a gauge's value)."""
    return REGISTRY.get_sample_value(metrics.counted(metric), labels) or 0.0


def user_counts() -> dict[str, float]:
    counts = {f"evaluations {m}": value(metrics.EVALUATIONS, mode=m) for m in MODES}
    return {**counts, "generations": value(metrics.GENERATIONS),
            "training smoke": value(metrics.TRAINING_STARTED, preset="smoke")}


def serving_counts() -> dict[str, float]:
    return {name: value(m, priority=INTERACTIVE) for name, m in (
        ("tokens", metrics.GENERATED_TOKENS), ("ttft", metrics.FIRST_TOKEN_LATENCY),
        ("tpot", metrics.OUTPUT_TOKEN_LATENCY))}


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def busy_gauges() -> dict[str, float]:
    """The queue and batch gauges that are not 0."""
    gauges = {f"{metrics.family(m)} {p}": value(m, priority=p)
              for m in (metrics.QUEUE_DEPTH, metrics.BATCH_SIZE) for p in metrics.PRIORITIES}
    return {k: v for k, v in gauges.items() if v}


def back_to_idle() -> dict[str, float]:
    """busy_gauges() once idle (a row leaves its batch just after its request ends), or what is still busy."""
    until(lambda: not busy_gauges(), 5)
    return busy_gauges()


def test_each_api_action_moves_its_counter_by_one_and_a_generation_its_token_and_latency_metrics(client):
    users, serving = user_counts(), serving_counts()
    for mode in MODES:
        assert client.post("/api/evaluate", json={"text": TEXT, "mode": mode}).status_code == 200
    gen = client.post("/api/generate", json={"prompt": PROMPT, "max_new_tokens": 8, "temperature": 0}).json()
    assert moved(serving, serving_counts()) == {"tokens": gen["base"]["tokens"], "ttft": 1, "tpot": 1}
    job = client.post("/api/train", json={"preset": "smoke"}).json()
    client.post(f"/api/train/{job['job_id']}/cancel")  # no training left running after the test
    assert until(lambda: client.get(f"/api/train/{job['job_id']}").json()["state"] in FINAL_STATES, 30)
    assert moved(users, user_counts()) == {**{f"evaluations {m}": 1 for m in MODES}, "generations": 1,
                                           "training smoke": 1}
    assert back_to_idle() == {}


def ui_handlers(service) -> dict[str, object]:
    """The UI's event handlers: its actions by api_name, its page load and tab close as "load", "unload"."""
    handlers = {}
    for dep in build_ui(service).fns.values():
        lifecycle = {event for _, event in dep.targets} & {"load", "unload"}
        for key in lifecycle or {dep.api_name}:
            handlers[key] = dep.fn
    return handlers


def test_the_ui_counts_like_the_api_and_a_page_load_then_a_tab_close_is_one_timed_session(settings, tiny):
    service = Service(settings)
    service.open()
    service.base, service.model_state = tiny, "ready"
    ui = ui_handlers(service)
    request = gr.Request(session_hash="a-page-of-the-ui-test")  # Gradio passes one to each handler
    users = user_counts()
    started, ended, active = (value(m) for m in (metrics.SESSIONS_STARTED, metrics.SESSION_DURATION,
                                                   metrics.SESSIONS_ACTIVE))
    ui["load"](request)
    for mode in MODES:
        ui[E.API_EVALUATE](TEXT, mode, request)
    list(ui[E.API_GENERATE](PROMPT, 0.0, 8, request))
    ui[E.API_START_TRAINING]("smoke", request)
    ui[E.API_CANCEL_TRAINING](request)
    assert until(lambda: service.trainer.active is None, 30)
    assert moved(users, user_counts()) == {**{f"evaluations {m}": 1 for m in MODES}, "generations": 1,
                                           "training smoke": 1}
    assert value(metrics.SESSIONS_STARTED) - started == 1  # the actions belong to the page's session
    assert value(metrics.SESSIONS_ACTIVE) - active == 1
    ui["unload"](request)
    assert value(metrics.SESSION_DURATION) - ended == 1 and value(metrics.SESSIONS_ACTIVE) == active


def test_sessions_end_when_their_tab_closes_or_after_five_idle_minutes_and_are_never_named():
    now = [0.0]
    tracker = metrics.SessionTracker(clock=lambda: now[0])
    seconds = metrics.family(metrics.SESSION_DURATION) + "_sum"
    started, ended = value(metrics.SESSIONS_STARTED), REGISTRY.get_sample_value(seconds)
    tracker.seen("tab-a")
    tracker.seen("secret-session-hash")
    now[0] = 60
    tracker.seen("tab-a")  # activity of a session, not a new one
    now[0] = 120
    tracker.end("secret-session-hash")
    tracker.end("never-seen")
    assert tracker.active() == 1 and value(metrics.SESSIONS_STARTED) - started == 2
    now[0] = 60 + metrics.SESSION_IDLE_S + 1
    assert tracker.active() == 0  # tab-a idled out after its last activity at 60 s
    assert REGISTRY.get_sample_value(seconds) - ended == 120 + 60  # closed at 120 s; idle: first to last activity
    tracker.seen("tab-a")  # back after idling: a new session
    assert value(metrics.SESSIONS_STARTED) - started == 3
    assert b"secret-session-hash" not in generate_latest()
    labels = {name for m in metrics.USER_METRICS for family in m.collect() for s in family.samples for name in s.labels}
    assert labels <= {"mode", "preset", "le"}, labels


def hold_in_its_first_step(tiny, **kw) -> tuple[Request, threading.Event, threading.Event]:
    """A request that holds its worker in its first decoding step (it is in the batch) until `release`."""
    calls, entered, release = [], threading.Event(), threading.Event()

    def hold() -> bool:
        calls.append(1)
        if len(calls) == 2:  # the first check is before its prefill, the second in the step
            entered.set()
            release.wait(10)
        return False
    return request(tiny, should_stop=hold, **kw), entered, release


def request(tiny, **kw) -> Request:
    return Request(chat_prompt(tiny.tokenizer, [{"role": "user", "content": PROMPT}]), kw.pop("tokens", 8), **kw)


def test_the_queue_and_batch_gauges_follow_the_worker_by_priority_and_return_to_0(tiny):
    batcher = TorchWorker(tiny.model, tiny.tokenizer, name="test-metrics")
    blocker, entered, release = hold_in_its_first_step(tiny)
    batcher.submit(blocker)
    assert entered.wait(10)
    waiting = [batcher.submit(request(tiny, seed=s)) for s in range(2)]
    try:
        assert value(metrics.QUEUE_DEPTH, priority=INTERACTIVE) == 2
        assert value(metrics.BATCH_SIZE, priority=INTERACTIVE) == 1
    finally:
        release.set()
    for r in (blocker, *waiting):
        wait(tiny.tokenizer, r)
    tokens = value(metrics.GENERATED_TOKENS, priority=BACKGROUND)
    background = wait(tiny.tokenizer, batcher.submit(request(tiny, background=True)))
    assert background and value(metrics.GENERATED_TOKENS, priority=BACKGROUND) > tokens
    assert back_to_idle() == {}


def test_the_gate_checks_every_user_and_serving_family_the_app_defines():
    from validation.checks import METRIC_FAMILIES

    defined = {metrics.family(m) for m in (*metrics.USER_METRICS, *metrics.SERVING_METRICS)}
    assert defined <= set(METRIC_FAMILIES), sorted(defined - set(METRIC_FAMILIES))


@pytest.mark.parametrize("action, args, field", [
    (E.API_LOAD_MODEL, (None,), "model"),
    (E.API_LOAD_MODEL, ("",), "model"),
    (E.API_EVALUATE, (5, "rules"), "text"),
    (E.API_EVALUATE, ("hello", "gpt"), "mode"),
    (E.API_GENERATE, ("", 0.0, 8), "prompt"),
    (E.API_GENERATE, ("hi", 0.0, 1.5), "max_new_tokens"),
    (E.API_START_TRAINING, ("no-such-preset",), "preset"),
    (E.API_CRITIQUE, (None,), "prompt"),
    (E.API_IMPACT, (0,), "limit"),
])
def test_a_ui_action_refuses_a_bad_value_naming_its_field_once(settings, action, args, field):
    """What the UI (and gradio_client) shows: a Gradio error naming the field, as the JSON route's."""
    handler = ui_handlers(Service(settings))[action]
    request = gr.Request(session_hash="a-page-of-the-ui-test")
    with pytest.raises(gr.Error) as e:
        out = handler(*args, request)
        list(out) if hasattr(out, "__next__") else out
    assert e.value.message.startswith(f"{field}: ") and f"{field}: {field}" not in e.value.message, e.value.message
