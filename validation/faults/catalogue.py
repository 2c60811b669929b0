"""The fault catalogue: small, realistic bugs injected into the real app, each one the gate must catch.

Each fault patches one function of the app at start-up (validation/faults/inject.py). Nothing here
is in the image or reachable from the app: the gate's own runs start the app through the wrapper.

    Fault(name, bug, session, expect, apply, tests=...)

`expect`: the criteria that should turn red (any of them counts as caught); `session`: the gate
session that runs against the faulty app; `tests`: a -k expression selecting the session's tests
that can see the fault (the rest would only cost time).
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from validation import criteria

# A delay beyond generate.time's bound in every profile: the runs use the faults session's profile.
SLOW_S = 1 + max(criteria.load(p)["generate.time"].threshold for p in criteria.profiles())
# The smoke test that measures generate.valid and generate.time: the others that match "generate"
# decode many times (each delayed by a slow fault) or train first.
ONE_GENERATE = "test_generate and not parameters and not compare"


BEHAVIOUR_MODEL = criteria.load().param("behaviour_model")  # the real model the behaviour criteria are judged on


@dataclass(frozen=True)
class Fault:
    name: str
    bug: str
    session: str
    expect: tuple[str, ...]
    apply: Callable[[], None]
    tests: str = ""
    model: str = "tiny"  # the default model of its runs; the behaviour faults need the real one


def _patch(target: str, make: Callable[[Callable], Callable]) -> None:
    """Replace `module:attr` or `module:Class.attr` with make(original)."""
    module_name, _, path = target.partition(":")
    owner = importlib.import_module(module_name)
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    original = getattr(owner, attr)
    setattr(owner, attr, make(original))


def _after(target: str, change: Callable) -> None:
    """The function runs, then `change(result, *args, **kwargs)` gives what it returns instead."""
    def make(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return change(fn(*args, **kwargs), *args, **kwargs)
        return wrapper
    _patch(target, make)


def _before(target: str, action: Callable) -> None:
    """`action(*args, **kwargs)` runs first (a delay, an exception), then the function."""
    def make(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            action(*args, **kwargs)
            return fn(*args, **kwargs)
        return wrapper
    _patch(target, make)


def _replace(target: str, fn: Callable) -> None:
    _patch(target, lambda _original: fn)


def _sleep(seconds: float) -> Callable:
    return lambda *a, **k: time.sleep(seconds)


def _raise(exc: Exception) -> Callable:
    def action(*a, **k):
        raise exc
    return action


# ---- the bugs ----------------------------------------------------------------------------------

def _never_flags(result, *a, **k):
    return {**result, "flagged": False, "flagged_principles": [],
            "principles": [{**p, "flagged": False} for p in result.get("principles", [])]}


def _always_flags(result, *a, **k):
    first = result["principles"][0]["name"] if result.get("principles") else "harm_prevention"
    return {**result, "flagged": True, "flagged_principles": [first]}


def _ui_says_not_flagged(result, *a, **k):
    return "Not flagged · " + result.split(" · ", 1)[-1]


def _no_evaluation(result, *a, **k):
    return {**result, "evaluation": {}}


def _lr_zero(presets: tuple[str, ...] | None = None):
    """The optimizer's learning rate is 0 (for `presets`, default every one)."""
    import dataclasses

    def make(fn):
        @functools.wraps(fn)
        def fine_tune(self, job, base, pairs, preset, stop):
            if presets is None or preset.name in presets:
                preset = dataclasses.replace(preset, learning_rate=0.0)
            return fn(self, job, base, pairs, preset, stop)
        return fine_tune
    _patch("app.training:Trainer._fine_tune", make)


def _last_loss_per_epoch(result, self, job, *a, **k):
    model, per_epoch = result
    return model, [job.losses[-1][1]] * len(per_epoch)  # the last step's loss, not the epoch's mean


def _checkpoint_not_written():
    def save_adapter(self, run_id, kind, peft_model, *, base_model):
        dest = self.path(run_id) / kind
        dest.mkdir(parents=True, exist_ok=True)  # the folder, but the save was forgotten
        return dest
    _replace("app.runs:RunStore.save_adapter", save_adapter)


def _truncate_weights(dest, *a, **k):
    for f in dest.glob("*.safetensors"):
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    return dest


def _cancel_ignored():
    def cancel(self, job_id):
        job = self.get(job_id)
        job.state = "cancelling"  # says so, but never sets the job's cancel event
        return job
    _replace("app.training:Trainer.cancel", cancel)


def _ready_lies():
    _before("app.models:load", _raise(RuntimeError("weights missing")))
    _replace("app.service:Service.ready", lambda self: (True, {"status": "ready", "model": "a-model", "judge": "ready"}))


def _error_per_evaluation(result, *a, **k):
    import logging

    logging.getLogger("app").error("evaluation cache miss")
    return result


def _bad_metrics():
    _replace("app.server:generate_latest", lambda *a, **k: b"cai_http_requests_total{route=/ 1\n")


def _metric_family_dropped():
    from prometheus_client import REGISTRY

    from app import metrics
    REGISTRY.unregister(metrics.TRAINING_STATE)


def _element_renamed():
    from app import elements
    elements.GEN_BUTTON = "generate-button"


def _no_type_check():
    # the UI builds its requests without validating them: a number reaches the service as the text
    _replace("app.ui:_request", lambda kind, /, **fields: kind.model_construct(**fields))


def _html_unescaped():
    import types

    ui = importlib.import_module("app.ui")
    ui.html = types.SimpleNamespace(escape=lambda s, quote=True: s)  # noqa: ARG005 - the UI's escaping forgotten


def _leaky_cache():
    kept = []

    def keep(result, *a, **k):
        kept.append(b"x" * 2**20)  # a per-request cache that never evicts: 1 MB per evaluation
        return result
    _after("app.service:Service.evaluate", keep)


# ---- a field that has another effect, or none ----------------------------------------------------

def _generation_field(name: str, value: Callable, target: str = "app.service:Service._submit_both") -> None:
    """`target` (the service's step that queues a generation) given the request with field `name`
    replaced by value(service)."""
    def make(fn):
        @functools.wraps(fn)
        def changed(self, req):
            return fn(self, req.model_copy(update={name: value(self)}))
        return changed
    _patch(target, make)


def _with_kwarg(target: str, name: str, value: Callable) -> None:
    """`target` called with keyword `name` replaced by value(its keyword arguments)."""
    def make(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **{**kwargs, name: value(kwargs)})
        return wrapper
    _patch(target, make)


def _batch_shares_token_limit():
    def make(fn):
        @functools.wraps(fn)
        def take(self, room, block):
            taken = fn(self, room, block)
            rows = [*self.live, *taken, *self._queues[False], *self._queues[True]]  # with those waiting: the
            # plain path decodes one request at a time
            bound = max((r.max_new_tokens for r in rows), default=0)
            for r in taken:
                r.max_new_tokens = bound  # the batch's largest limit, not each request's own
            return taken
        return take
    _patch("app.generation:Worker._take", make)


def _runs_list_stale():
    first: list = []

    def make(fn):
        @functools.wraps(fn)
        def list_runs(self):
            if not first:
                first.append(fn(self))  # the first listing, kept: runs written later are never listed
            return first[0]
        return list_runs
    _patch("app.runs:RunStore.list", make)


def _judge_does_rules():
    def make(fn):
        @functools.wraps(fn)
        def evaluate(text, mode="rules"):
            return {**fn(text, "rules" if mode == "judge" else mode), "mode": mode}
        return evaluate
    _patch("app.evaluation:evaluate", make)


def _preset_ignored():
    def make(fn):
        @functools.wraps(fn)
        def start(self, base, preset_name, seed):
            return fn(self, base, "smoke", seed)
        return start
    _patch("app.training:Trainer.start", make)

ONE_REFUSAL = "I'm sorry, but I can't help with that."


def _one_refusal_targets():
    """Every supervised target, red-team and helpful alike, is one fixed refusal."""
    for name in ("red_team_targets", "helpful_targets"):
        _after(f"app.recipe:{name}", lambda result, *a, **k: ([(p, ONE_REFUSAL) for p, _ in result[0]], result[1]))


def _restating_answers(pairs, base, trained, items, **kw):
    """The trained model's answers are a restatement of the request."""
    return [(b, f"The user is asking: {p}") for (b, _), p in zip(pairs, items)]


def _open_without_marking(self):
    self.root.mkdir(parents=True, exist_ok=True)  # the check of runs left active was dropped
    return []


def _cancel_only_local():
    from app.training import StoredJob

    def make(fn):
        @functools.wraps(fn)
        def cancel(self, job_id):
            job = self.get(job_id)
            if isinstance(job, StoredJob):  # another replica's job: answers cancelling and tells nobody
                return StoredJob({**job.snapshot(), "state": "cancelling"})
            return fn(self, job_id)
        return cancel
    _patch("app.training:Trainer.cancel", make)


FAULTS: dict[str, Fault] = {f.name: f for f in [
    Fault("evaluate_never_flags", "evaluation drops every principle's flag", "smoke",
          ("evaluate.harmful_flagged", "gradio_api.evaluate"),
          lambda: _after("app.evaluation:evaluate", _never_flags), "evaluate"),
    Fault("evaluate_always_flags", "evaluation flags harmless text", "smoke",
          ("evaluate.harmless_clean",),
          lambda: _after("app.evaluation:evaluate", _always_flags), "evaluate"),
    Fault("evaluate_slow", "evaluation sleeps 5.5 s (a blocking call in the request path)", "smoke",
          ("evaluate.time", "gradio_api.evaluate_time"),
          lambda: _before("app.service:Service.evaluate", _sleep(5.5)), "test_evaluate and not modes"),
    Fault("health_500", "GET /health raises", "smoke",
          ("startup.health_time", "health.status"),
          lambda: _before("app.service:Service.health", _raise(RuntimeError("health"))), "startup or health"),
    Fault("ready_lies", "the model fails to load and GET /ready says ready anyway", "smoke",
          ("ready.truthful", "model.load_time"),
          _ready_lies, "ready or model_load"),
    Fault("model_load_fails", "loading the default model raises", "smoke",
          ("ready.time", "model.load_time"),
          lambda: _before("app.models:load", _raise(RuntimeError("weights missing"))), "ready or model_load"),
    Fault("model_load_slow", "every model load takes 31 s", "smoke",
          ("model.load_time", "ready.time"),
          lambda: _before("app.models:load", _sleep(31)), "test_model_load and not changes"),
    Fault("memory_leak_per_request", "every evaluation keeps 1 MB that is never freed", "smoke",
          ("memory.growth",), _leaky_cache, "memory_growth"),
    Fault("generate_empty", "generation returns empty text", "smoke",
          ("generate.valid",),
          lambda: _after("app.generation:wait", lambda text, *a, **k: ""), ONE_GENERATE),
    Fault("generate_no_verdict", "generation answers without the judge's evaluation", "smoke",
          ("generate.valid",),
          lambda: _after("app.service:Service._answer", _no_evaluation), ONE_GENERATE),
    Fault("generate_slow", f"generation waits {SLOW_S:.0f} s before decoding", "smoke",
          ("generate.time",),
          lambda: _before("app.service:Service.generate", _sleep(SLOW_S)), ONE_GENERATE),
    Fault("train_changes_nothing", "the optimizer's learning rate is 0: training changes no weight", "smoke",
          ("train.checkpoint",),
          _lr_zero, "training_preset"),
    Fault("checkpoint_not_written", "the run claims a checkpoint it never wrote", "smoke",
          ("train.checkpoint", "train.state"),
          _checkpoint_not_written, "training_preset"),
    Fault("checkpoint_truncated", "the adapter's weights file is cut in half", "smoke",
          ("train.checkpoint",),
          lambda: _after("app.runs:RunStore.save_adapter", _truncate_weights), "training_preset"),
    Fault("epoch_loss_is_last_step", "each epoch's reported loss is its last step's, not its mean", "smoke",
          ("train.summary_consistent",),
          lambda: _after("app.training:Trainer._fine_tune", _last_loss_per_epoch), "training_preset"),
    Fault("runs_list_stale", "GET /api/runs keeps answering its first listing", "smoke",
          ("train.runs_on_volume", "train.summary_consistent", "train.checkpoint"),
          _runs_list_stale, "training_preset or training_seed or runs_list"),
    Fault("train_fails", "fine-tuning raises", "smoke",
          ("train.state", "train.checkpoint"),
          lambda: _before("app.training:Trainer._fine_tune", _raise(RuntimeError("CUDA error"))), "training_preset"),
    Fault("cancel_ignored", "a cancel answers cancelling and the run goes on", "smoke",
          ("train.cancel",),
          _cancel_ignored, "cancel"),
    Fault("metrics_garbage", "/metrics is not Prometheus text", "smoke",
          ("metrics.parse", "metrics.families_missing"),
          _bad_metrics, "metrics"),
    Fault("metric_family_dropped", "the training-state gauge is not exported", "smoke",
          ("metrics.families_missing",),
          _metric_family_dropped, "metrics"),
    Fault("ui_element_renamed", "a UI control's elem_id changed (generate button)", "smoke",
          ("ui.elements_missing",),
          _element_renamed, "ui_served"),
    Fault("ui_verdict_contradicts", "the UI shows 'Not flagged' whatever the API says", "smoke",
          ("gradio_api.evaluate",),
          lambda: _after("app.ui:_verdict", _ui_says_not_flagged), "gradio_api"),
    Fault("error_logged", "every evaluation logs an ERROR", "smoke",
          ("container.log_errors",),
          lambda: _after("app.evaluation:evaluate", _error_per_evaluation), "evaluate or error_lines"),
    # A field that is accepted, validated and then has another effect, or none (validation/checks/effects.py).
    Fault("generate_prompt_ignored", "generation answers a fixed prompt, not the user's", "smoke",
          ("effect.generate_prompt",),
          lambda: _generation_field("prompt", lambda self: "Tell me something."), "generate_parameters"),
    Fault("generate_seed_ignored", "generation samples with the server's seed, not the request's", "smoke",
          ("effect.generate_seed",),
          lambda: _generation_field("seed", lambda self: self.settings.seed), "generate_parameters"),
    Fault("generate_tokens_ignored", "generation decodes 64 tokens whatever max_new_tokens says", "smoke",
          ("effect.generate_max_new_tokens",),
          lambda: _generation_field("max_new_tokens", lambda self: 64), "generate_parameters"),
    Fault("generate_temperature_ignored", "generation samples at 0.7 whatever the temperature", "smoke",
          ("effect.generate_temperature",),
          lambda: _generation_field("temperature", lambda self: 0.7), "generate_parameters"),
    Fault("compare_ignored", "compare=false still answers with the trained model", "smoke",
          ("effect.generate_compare",),
          lambda: _generation_field("compare", lambda self: True), "training_preset or generate_compare"),
    Fault("batch_shares_token_limit", "requests decoded together all take the batch's largest max_new_tokens", "smoke",
          ("effect.isolation",),
          _batch_shares_token_limit, "generate_parameters"),
    Fault("ui_temperature_ignored", "the UI's generation samples at 0.7 whatever the temperature slider says", "smoke",
          ("effect.ui_generate",),
          lambda: _generation_field("temperature", lambda self: 0.7, "app.service:Service.generate_stream"), "ui_controls"),
    Fault("judge_does_rules", "mode=judge evaluates with the rules", "smoke",
          ("effect.evaluate_mode",),
          _judge_does_rules, "evaluate_modes"),
    Fault("critique_rounds_ignored", "a critique always runs one round", "smoke",
          ("effect.critique_rounds",),
          lambda: _with_kwarg("app.cai:run", "rounds", lambda kw: 1), "critique_parameters"),
    Fault("critique_without_answer", "the critique step is not shown the answer it critiques", "smoke",
          ("effect.critique_conversation",),
          lambda: _patch("app.cai:critique_messages", lambda fn: lambda prompt, response, request: fn(prompt, "", request)),
          "critique_parameters"),
    Fault("impact_limit_ignored", "the impact report takes 4 prompts a set whatever the limit", "smoke",
          ("effect.impact_limit",),
          lambda: _with_kwarg("app.impact:run", "limit", lambda kw: 4), "training_preset or impact_parameters"),
    Fault("train_preset_ignored", "every training job runs the smoke preset", "smoke",
          ("effect.train_preset",),
          _preset_ignored, "training_presets_plan"),
    Fault("train_seed_ignored", "training's SL-CAI data is drawn with seed 0 whatever the run's seed", "smoke",
          ("effect.train_seed",),
          lambda: _with_kwarg("app.cai:run_many", "seed", lambda kw: 0 if kw.get("background") else kw["seed"]),
          "training_preset or training_seed"),
    Fault("no_type_check", "a text field's type is not checked (a number gives a 500)", "resilience",
          ("resilience.bad_input_5xx", "resilience.bad_input_rejected"),
          _no_type_check, "bad_input_battery"),
    Fault("html_unescaped", "user text goes into the UI's HTML unescaped", "resilience",
          ("resilience.html_unescaped",),
          _html_unescaped, "html_comes_back_escaped"),
    Fault("run_not_marked_interrupted", "after a crash, the run that was training is not marked interrupted",
          "resilience", ("resilience.killed_run_state",),
          lambda: _replace("app.runs:RunStore.open", _open_without_marking), "sigkill_process"),
    Fault("auth_not_applied", "basic auth accepts any credentials", "resilience",
          ("security.auth_unprotected",),
          lambda: _replace("app.server:Guard._authorized", lambda self, header: True), "basic_auth"),
    Fault("rate_limit_not_applied", "the rate limit never answers 429", "resilience",
          ("security.rate_limited",),
          lambda: _replace("app.server:RateLimiter.retry_after", lambda self, client: 0.0), "rate_limit"),
    # Behaviour: only the behaviour criteria see these (the model still answers, fast and flagged less).
    Fault("targets_one_refusal", "every training target is one fixed refusal", "perf",
          ("behaviour.over_refusal", "behaviour.relevance"),
          _one_refusal_targets, "quick_demo or behaviour", model=BEHAVIOUR_MODEL),
    Fault("quick_trains_nothing", "the quick preset's learning rate is 0 (the smoke preset's still trains)", "perf",
          ("behaviour.answers_changed",),
          lambda: _lr_zero(("quick",)), "quick_demo or behaviour", model=BEHAVIOUR_MODEL),
    Fault("answers_restate_request", "the trained model answers with a restatement of the request", "perf",
          ("behaviour.helpfulness",),
          lambda: _after("app.impact:answers", _restating_answers), "quick_demo or behaviour", model=BEHAVIOUR_MODEL),
    # A fleet (two replicas sharing Postgres): only the replicas session sees these.
    Fault("job_state_in_memory", "a job is known only to the replica running it (the database never answers for it)",
          "replicas", ("replicas.consistent",),
          lambda: _replace("app.pgstore:PostgresRunStore.find_job", lambda self, job_id: None), "seen_polled"),
    Fault("cancel_only_local", "a cancel asked on another replica is answered but never reaches the job", "replicas",
          ("replicas.consistent",), _cancel_only_local, "seen_polled"),
    Fault("lease_never_checked", "a job whose replica died is never marked interrupted (the lease is not read)",
          "replicas", ("replicas.kill_one",),
          lambda: _replace("app.pgstore:PostgresRunStore._expire", lambda self: None), "sigkill"),
]}
