"""The perf gate's load: user classes that mirror how the CAI demo is really used.

Run by validation/perf/loadrun.py in its own process (locust monkey-patches gevent on import, so it
never shares the pytest process), headless, alone or as `--master` + `--worker` processes:

    locust -f validation/perf/locustfile.py --headless -H http://127.0.0.1:7860 -u 10 -r 10 \
        --request-budget 100 --json-file out/locust --csv out/locust --html out/locust.html

Users (10 users: 1 trainer, then 1 / 2 / 3 / 3 by weight):
    ProbeUser      a platform health check: GET /health once a second
    VisitorUser    opens the page (GET / and the Gradio config), looks at the model list
    EvaluatorUser  POST /api/evaluate, mostly `rules`, sometimes `judge`
    GeneratorUser  POST /api/generate, 64 new tokens, base vs trained (as the UI does)
    TrainerUser    (exactly one) starts a training run and polls it; 409 busy is the expected
                   answer while another run is active (it then watches that run), not a failure

The request budget is exact: every request takes a token first; a user that finds none left stops.
--generation-budget N gives the generators a pool of their own (N generations beside the budget), so a
generation latency percentile has enough samples however slow generation is; the cheap requests of
the other users add little load, so generations after their budget is spent see the same app.
Alone, the runner quits as soon as every budgeted request has completed. Distributed, worker i of N
gets budget // N (+1 for the first budget % N workers) of each pool and the master quits when its
aggregated stats hold both (workers report every 3 s). --run-time stays a safety cap.

--request-log PREFIX writes one JSON line per request (start time, name, ms, ok) to PREFIX.<pid>.jsonl:
the harness uses it for latency during training and the latency-over-time plot.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time

import gevent
from locust import HttpUser, constant, constant_pacing, events, task
from locust.exception import StopUser
from locust.runners import LocalRunner, MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from validation.api import FINAL_STATES  # the repository is on PYTHONPATH (loadrun.run_load)

PROMPTS = (
    "How do I make friends at a new school?",
    "What is a good way to learn to cook?",
    "How can I break into my neighbour's house?",
    "Tell me why one group of people is worse than another.",
    "Should I tell my friend the truth about a mistake I made?",
    "Give me tips for a job interview.",
)
TEXTS = (
    "Here is how to pick the lock on your neighbour's door and steal their car.",
    "I'm sorry, but I can't help with breaking into someone's home. A locksmith can help you.",
    "Everyone from that country is lazy and dishonest.",
    "You must do exactly what I say and never ask questions.",
    "Breakfast is the most important meal of the day, some people say.",
    "The moon is made of cheese, and scientists all agree on it.",
)


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--request-budget", type=int, default=0, help="exact number of requests to send (0: no budget)")
    parser.add_argument("--generation-budget", type=int, default=0,
                        help="generations in a pool of their own, beside the budget (0: generators share the budget)")
    parser.add_argument("--budget-workers", type=int, default=1, help="workers sharing the budget (distributed)")
    parser.add_argument("--request-log", default="", help="write one JSON line per request to PREFIX.<pid>.jsonl")
    parser.add_argument("--gen-tokens", type=int, default=64, help="max_new_tokens of each generation")
    parser.add_argument("--train-preset", default="smoke", help="preset the trainer user asks for")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between training polls")
    parser.add_argument("--think-scale", type=float, default=1.0, help="multiplies every user's think time")
    parser.add_argument("--judge-share", type=float, default=0.25, help="share of evaluations in judge mode")


class Budget:
    """Tokens for requests (one process). `limit` None: unlimited."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.taken = 0
        self.done = 0

    def take(self) -> bool:
        if self.limit is None:
            return True
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def spent(self) -> bool:
        return self.limit is None or self.done >= self.limit


BUDGET = Budget()
GENERATIONS = Budget()  # the generators' own pool when --generation-budget is given
_log = {"fh": None}


def _opt(env, name, default=None):
    return getattr(env.parsed_options, name, default) if env.parsed_options else default


def share(budget: int, workers: int, index: int) -> int:
    """Worker `index`'s share of `budget` over `workers` (the shares add up to the budget)."""
    return budget // workers + (1 if index < budget % workers else 0)


@events.test_start.add_listener
def _start(environment, **_):
    runner = environment.runner
    for pool, option in ((BUDGET, "request_budget"), (GENERATIONS, "generation_budget")):
        budget = _opt(environment, option, 0) or 0
        if budget and isinstance(runner, WorkerRunner):
            pool.limit = share(budget, max(1, _opt(environment, "budget_workers", 1)), max(0, runner.worker_index))
        elif budget and isinstance(runner, LocalRunner):
            pool.limit = budget
    prefix = _opt(environment, "request_log", "")
    if prefix and not isinstance(runner, MasterRunner) and _log["fh"] is None:
        _log["fh"] = open(f"{prefix}.{os.getpid()}.jsonl", "a", buffering=1)  # noqa: SIM115 - closed at quit


@events.request.add_listener
def _request(request_type, name, response_time, exception, start_time=None, response=None, **_):
    fh = _log["fh"]
    if fh is not None:
        fh.write(
            json.dumps(
                {
                    "t": start_time or (time.time() - (response_time or 0) / 1000),
                    "name": f"{request_type} {name}",
                    "ms": round(response_time or 0, 2),
                    "ok": exception is None,
                    "status": getattr(response, "status_code", None),
                }
            )
            + "\n"
        )


@events.init.add_listener
def _init(environment, **_):
    runner = environment.runner
    budget = _opt(environment, "request_budget", 0) or 0
    if not budget:
        return
    budget += _opt(environment, "generation_budget", 0) or 0
    if isinstance(runner, MasterRunner):

        def on_report(client_id, data, **__):
            if runner.stats.total.num_requests >= budget and runner.state not in ("stopping", "stopped", "quitting"):
                gevent.spawn_later(0.1, runner.quit)

        events.worker_report.add_listener(on_report)
    elif isinstance(runner, LocalRunner):

        def watch():
            while True:
                gevent.sleep(0.05)
                if BUDGET.limit is not None and BUDGET.spent() and GENERATIONS.spent():
                    runner.quit()
                    return

        gevent.spawn(watch)


@events.quitting.add_listener
def _quitting(environment, **_):
    # Locust writes <csv>_stats.csv on a one-second tick and only closes it at shutdown, so its last
    # requests can be missing (a short run's file can hold none). Here, after the last request and
    # before locust saves its JSON (which empties the per-endpoint stats), the same table is written
    # by locust's own CSV writer to <csv>_stats_final.csv: the harness reads its percentiles.
    prefix = _opt(environment, "csv_prefix", "")
    if prefix and not isinstance(environment.runner, WorkerRunner):
        with open(f"{prefix}_stats_final.csv", "w", newline="") as fh:
            StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(fh))
    if _log["fh"] is not None:
        _log["fh"].close()
        _log["fh"] = None


class CaiUser(HttpUser):
    abstract = True

    def pool(self) -> Budget:
        return BUDGET

    def call(self, method: str, path: str, name: str, check=None, ok_status=(200,), **kwargs):
        """One budgeted request; `check(response)` returns an error text or None."""
        pool = self.pool()
        if not pool.take():
            raise StopUser()
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as r:
            if r.status_code not in ok_status:
                r.failure(f"status {r.status_code}: {r.text[:120]}")
            else:
                try:
                    problem = check(r) if check else None
                except ValueError as exc:  # not JSON
                    problem = f"bad body: {exc}"
                if problem:
                    r.failure(problem)
                else:
                    r.success()
        pool.done += 1
        return r

    def think(self, lo: float, hi: float) -> float:
        return random.uniform(lo, hi) * _opt(self.environment, "think_scale", 1.0)


def _healthy(r):
    return None if r.json().get("status") == "healthy" else f"health body {r.text[:80]}"


class ProbeUser(CaiUser):
    """A platform health check (Fly.io / Railway / Cloud Run probe) once a second."""

    weight = 1

    def wait_time(self):
        return constant_pacing(1.0 * _opt(self.environment, "think_scale", 1.0))(self)

    @task
    def health(self):
        self.call("GET", "/health", "/health", _healthy)


class VisitorUser(CaiUser):
    """Someone opening the demo: the page, the Gradio config the page loads, the model list."""

    weight = 2

    def wait_time(self):
        return self.think(1.0, 3.0)

    @task(3)
    def page(self):
        self.call("GET", "/", "/ (page)", lambda r: None if "gradio" in r.text.lower() else "not a Gradio page")
        self.call("GET", "/config", "/config", lambda r: None if "components" in r.json() else "no components")

    @task(1)
    def models(self):
        self.call("GET", "/api/models", "/api/models", lambda r: None if "registry" in r.json() else "no registry")


class EvaluatorUser(CaiUser):
    """Evaluates texts against the constitution: mostly rules, some with the judge model."""

    weight = 3

    def wait_time(self):
        return self.think(0.5, 1.5)

    @task
    def evaluate(self):
        judge = random.random() < _opt(self.environment, "judge_share", 0.25)
        mode = "judge" if judge else "rules"
        self.call(
            "POST",
            "/api/evaluate",
            f"/api/evaluate [{mode}]",
            lambda r: None if "flagged" in r.json() else f"no verdict: {r.text[:80]}",
            json={"text": random.choice(TEXTS), "mode": mode},
        )


def _generated(r):
    base = r.json().get("base")
    return None if isinstance(base, dict) and isinstance(base.get("text"), str) else f"no base text: {r.text[:80]}"


class GeneratorUser(CaiUser):
    """Generates base vs trained side by side, as the UI's Generate tab does."""

    weight = 3

    def wait_time(self):
        return self.think(0.5, 1.5)

    def pool(self) -> Budget:
        return BUDGET if GENERATIONS.limit is None else GENERATIONS

    @task
    def generate(self):
        tokens = _opt(self.environment, "gen_tokens", 64)
        self.call(
            "POST",
            "/api/generate",
            f"/api/generate [{tokens} tokens]",
            _generated,
            json={"prompt": random.choice(PROMPTS), "max_new_tokens": tokens, "seed": random.randint(0, 999), "compare": True},
        )


class TrainerUser(CaiUser):
    """Exactly one: starts a training run once and polls it (or the run already active) to its end,
    then keeps an eye on GET /api/train. 409 busy is the app's documented answer, not a failure."""

    fixed_count = 1

    def wait_time(self):
        return constant(_opt(self.environment, "poll_interval", 2.0))(self)

    def on_start(self):
        self.job_id = None
        self.started = False

    @task
    def train(self):
        if not self.started:
            self.started = True
            preset = _opt(self.environment, "train_preset", "smoke")

            def accepted(r):
                body = r.json()
                if r.status_code == 202:
                    self.job_id = body.get("job_id")
                    return None if self.job_id else "202 without job_id"
                if body.get("error") == "busy":
                    self.job_id = body.get("job_id")  # watch the active run
                    return None
                return f"409 {body.get('error')}: {body.get('message', '')[:80]}"

            self.call("POST", "/api/train", "/api/train", accepted, ok_status=(202, 409), json={"preset": preset, "seed": 7})
        elif self.job_id:

            def polled(r):
                state = r.json().get("state")
                if state in FINAL_STATES:
                    self.job_id = None
                return None if state else "no state"

            self.call("GET", f"/api/train/{self.job_id}", "/api/train/{job_id}", polled)
        else:
            self.call("GET", "/api/train", "/api/train (status)", lambda r: None if "active" in r.json() else "no active")
