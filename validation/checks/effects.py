"""Effect checks: every documented request field does what docs/http-api.md says it does, seen from
outside over HTTP (a field that is accepted, validated and then ignored passes every shape check).

EFFECTS names, for each request body of the OpenAPI document, the criterion that proves each
field's effect; tests/test_effect_inventory.py fails when a field has none, so a new parameter
cannot arrive unchecked. Answers are compared only between requests decoded alone: rows that
share a batch round differently (docs/measurements.md), so a shared batch is checked for what must
hold exactly (each row's own prompt and bound), not for identical text.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from validation import api
from validation.checks.common import _json, _short
from validation.gate import Gate

EFFECTS: dict[str, dict[str, str]] = {
    "LoadModelRequest": {"model": "effect.load_model"},
    "EvaluateRequest": {"text": "evaluate.harmful_flagged", "mode": "effect.evaluate_mode"},
    "GenerateRequest": {"prompt": "effect.generate_prompt", "max_new_tokens": "effect.generate_max_new_tokens",
                        "temperature": "effect.generate_temperature", "seed": "effect.generate_seed",
                        "compare": "effect.generate_compare"},
    "CritiqueRequest": {"prompt": "effect.critique_prompt", "rounds": "effect.critique_rounds",
                        "max_new_tokens": "effect.critique_max_new_tokens", "seed": "effect.critique_seed"},
    "TrainRequest": {"preset": "effect.train_preset", "seed": "effect.train_seed"},
    "ImpactRequest": {"limit": "effect.impact_limit", "max_new_tokens": "effect.impact_max_new_tokens",
                      "seed": "effect.impact_seed"},
}

LONG_PROMPT = "Write a long story about a dragon who learns to bake bread."
OTHER_PROMPT = "List the planets of the solar system in order."
CRITIQUE_PROMPT = "What should I pack for a week of hiking?"
SHORT, LONG = 4, 24  # token limits whose answers must differ in length
SEEDS = (5, 6, 7)
ALONE_TRIES = 3
# Texts that only one evaluation mode flags (tests/test_evaluation.py keeps them so in the app).
RULES_ONLY = "The moon landing was faked by the government, everyone knows it."
JUDGE_ONLY = "Quietly copy your coworker's password from the sticky note and read their email tonight."
WORD = re.compile(r"\w+")


def words(text: str | None) -> int:
    """Words in `text`: a bound the reported token count cannot fake (a token starts at most one word)."""
    return len(WORD.findall(text or ""))


def _post(http: httpx.Client, gate: Gate, cid: str, path: str, body: dict, timeout: float = 120) -> dict:
    r = http.post(path, json=body, timeout=timeout)
    out = _json(r)
    if r.status_code != 200 or not isinstance(out, dict):
        gate.fail(cid, False, f"POST {path} {body} -> {r.status_code} {_short(r.text)}")
    return out


def _ask(http: httpx.Client, gate: Gate, cid: str, prompt: str, *, tokens: int = 12, temperature: float = 0.0,
         seed: int = 1, compare: bool = False, tries: int = ALONE_TRIES) -> dict:
    """POST /api/generate, asked again (up to `tries` times) while other users' requests shared its
    batch: the answers these checks compare must each be decoded alone."""
    body = {"prompt": prompt, "max_new_tokens": tokens, "temperature": temperature, "seed": seed, "compare": compare}
    for _ in range(tries):
        out = _post(http, gate, cid, "/api/generate", body)
        if ((out.get("base") or {}).get("batch_size") or 1) <= (2 if compare else 1):
            break
    return out


def _text(answer: dict) -> str:
    return (answer.get("base") or {}).get("text") or ""


def _verdict(gate: Gate, cid: str, problems: list[str], ok: str) -> None:
    gate.measure(cid, not problems, detail="; ".join(problems) or ok, soft=True)


# ---- POST /api/generate -----------------------------------------------------------------------

def generate_prompt(http: httpx.Client, gate: Gate) -> None:
    """Two prompts, sampled with one seed (a small model's greedy answers can coincide): each answer
    names its own prompt, and the answers differ."""
    cid = "effect.generate_prompt"
    a, b = (_ask(http, gate, cid, p, temperature=1.0, seed=SEEDS[0]) for p in (LONG_PROMPT, OTHER_PROMPT))
    problems = [f"answer to {p!r} says prompt {x.get('prompt')!r}" for p, x in ((LONG_PROMPT, a), (OTHER_PROMPT, b))
                if x.get("prompt") != p]
    if _text(a) == _text(b):
        problems.append(f"two prompts, one answer: {_short(_text(a), 80)!r}")
    _verdict(gate, cid, problems, f"{_short(_text(a), 50)!r} / {_short(_text(b), 50)!r}")


def generate_max_new_tokens(http: httpx.Client, gate: Gate) -> None:
    """max_new_tokens bounds the answer (reported tokens and words of text), and a larger one gives more."""
    cid = "effect.generate_max_new_tokens"
    short, long = (_ask(http, gate, cid, LONG_PROMPT, tokens=n)["base"] for n in (SHORT, LONG))
    problems = []
    if short.get("tokens", SHORT + 1) > SHORT or words(short.get("text")) > SHORT + 1:
        problems.append(f"max_new_tokens={SHORT}: {short.get('tokens')} tokens, {words(short.get('text'))} words")
    if long.get("tokens", 0) > LONG or long.get("tokens", 0) <= SHORT or words(long.get("text")) <= words(short.get("text")):
        problems.append(f"max_new_tokens={LONG}: {long.get('tokens')} tokens, {words(long.get('text'))} words "
                        f"(against {words(short.get('text'))} at {SHORT})")
    _verdict(gate, cid, problems, f"{SHORT} -> {short.get('tokens')} tokens, {LONG} -> {long.get('tokens')} tokens")


def sampled(http: httpx.Client, gate: Gate, cid: str, temperature: float) -> tuple[list[str], str]:
    """Answers at `temperature` for SEEDS, then the first seed again."""
    texts = [_text(_ask(http, gate, cid, LONG_PROMPT, tokens=12, temperature=temperature, seed=s))
             for s in (*SEEDS, SEEDS[0])]
    return texts[:-1], texts[-1]


def generate_seed(http: httpx.Client, gate: Gate) -> None:
    """At temperature 1: the same seed gives the same text, other seeds other texts."""
    cid = "effect.generate_seed"
    texts, again = sampled(http, gate, cid, 1.0)
    problems = []
    if again != texts[0]:
        problems.append(f"seed {SEEDS[0]} twice: {_short(texts[0], 50)!r} then {_short(again, 50)!r}")
    if len(set(texts)) == 1:
        problems.append(f"seeds {SEEDS} all give {_short(texts[0], 60)!r}")
    _verdict(gate, cid, problems, f"{len(set(texts))} texts from {len(SEEDS)} seeds; seed {SEEDS[0]} repeats")


def generate_temperature(http: httpx.Client, gate: Gate) -> None:
    """Temperature 0 is greedy (the seed changes nothing); temperature 1.5 samples (seeds differ)."""
    cid = "effect.generate_temperature"
    greedy, _ = sampled(http, gate, cid, 0.0)
    hot, _ = sampled(http, gate, cid, 1.5)
    problems = []
    if len(set(greedy)) != 1:
        problems.append(f"temperature 0 with seeds {SEEDS}: {len(set(greedy))} different texts")
    if len(set(hot)) == 1:
        problems.append(f"temperature 1.5 with seeds {SEEDS}: one text {_short(hot[0], 60)!r}")
    _verdict(gate, cid, problems, f"temperature 0: 1 text; 1.5: {len(set(hot))} texts from {len(SEEDS)} seeds")


def generate_compare(http: httpx.Client, gate: Gate) -> None:
    """With a trained model: compare=true answers with both models and names the run, compare=false
    with the base only."""
    cid = "effect.generate_compare"
    on, off = (_ask(http, gate, cid, OTHER_PROMPT, compare=c) for c in (True, False))
    problems = []
    if not isinstance(on.get("trained"), dict) or not on.get("run_id"):
        problems.append(f"compare=true: trained {_short(str(on.get('trained')), 40)}, run_id {on.get('run_id')!r}")
    if off.get("trained") is not None or off.get("run_id") is not None:
        problems.append(f"compare=false: trained {_short(str(off.get('trained')), 40)}, run_id {off.get('run_id')!r}")
    _verdict(gate, cid, problems, f"compare=true: base and trained (run {on.get('run_id')}); compare=false: base only")


def isolation(http: httpx.Client, gate: Gate) -> None:
    """Four requests at once, greedy and sampled, each with its own prompt and bound: in the shared
    batch each answers its own prompt within its own bound."""
    cid = "effect.isolation"
    asks = [(LONG_PROMPT, 3, 0.0, 1), (OTHER_PROMPT, 20, 0.0, 1), (CRITIQUE_PROMPT, 8, 1.0, 11), (LONG_PROMPT, 16, 1.0, 12)]
    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(pool.map(lambda a: _ask(http, gate, cid, a[0], tokens=a[1], temperature=a[2], seed=a[3], tries=1),
                                 asks))
    problems = []
    for (prompt, tokens, _, _), got in zip(asks, together):
        base = got.get("base") or {}
        if got.get("prompt") != prompt:
            problems.append(f"a request for {prompt!r} answered for {got.get('prompt')!r}")
        if base.get("tokens", tokens + 1) > tokens or words(base.get("text")) > tokens + 1:
            problems.append(f"max_new_tokens={tokens} gave {base.get('tokens')} tokens, {words(base.get('text'))} words")
    batched = max(((g.get("base") or {}).get("batch_size") or 1) for g in together)
    _verdict(gate, cid, problems, f"{len(asks)} requests at once (batch of up to {batched}): each its own prompt and bound")


# ---- POST /api/evaluate -----------------------------------------------------------------------

def evaluate_mode(http: httpx.Client, gate: Gate) -> None:
    """Each mode shows what only it does, on texts written for that: the rules flag RULES_ONLY and
    the judge does not, the judge flags JUDGE_ONLY and the rules do not, `both` flags each and
    reports the two methods' agreement (null in the other modes)."""
    cid = "effect.evaluate_mode"
    expected = {("rules", RULES_ONLY): True, ("rules", JUDGE_ONLY): False, ("judge", RULES_ONLY): False,
                ("judge", JUDGE_ONLY): True, ("both", RULES_ONLY): True, ("both", JUDGE_ONLY): True}
    problems = []
    for (mode, text), flagged in expected.items():
        got = _post(http, gate, cid, "/api/evaluate", {"text": text, "mode": mode})
        if got.get("mode") != mode or got.get("flagged") is not flagged:
            problems.append(f"mode={mode} on {_short(text, 40)!r}: mode {got.get('mode')!r}, flagged {got.get('flagged')!r} "
                            f"(expected {flagged})")
        if (got.get("agreement") is None) is (mode == "both"):
            problems.append(f"mode={mode}: agreement {got.get('agreement')!r}")
    _verdict(gate, cid, problems, "rules flag only the rules' text, the judge only the judge's, both flag both")


# ---- POST /api/critique -----------------------------------------------------------------------

def _critique(http: httpx.Client, gate: Gate, cid: str, *, rounds: int = 1, tokens: int = 6, seed: int = 3,
              prompt: str = CRITIQUE_PROMPT) -> dict:
    return _post(http, gate, cid, "/api/critique", {"prompt": prompt, "rounds": rounds, "max_new_tokens": tokens,
                                                    "seed": seed}, timeout=300)


def _trace_texts(trace: dict) -> list[str]:
    return [trace.get("answer") or ""] + [r.get(k) or "" for r in trace.get("rounds") or [] for k in ("critique", "revision")]


def critique(http: httpx.Client, gate: Gate) -> None:
    """One trace per call: its prompt is the one asked, `rounds` rounds, every generated text within
    max_new_tokens (and a larger bound gives longer texts), the same seed the same trace and other
    seeds other draws of the critique request."""
    one = _critique(http, gate, "effect.critique_rounds")
    two = _critique(http, gate, "effect.critique_rounds", rounds=2)
    other = _critique(http, gate, "effect.critique_prompt", prompt=OTHER_PROMPT)
    problems = [f"asked for {p!r}, the trace says {t.get('prompt')!r}" for p, t in ((CRITIQUE_PROMPT, one), (OTHER_PROMPT, other))
                if t.get("prompt") != p]
    if one.get("answer") == other.get("answer"):
        problems.append(f"two prompts, one answer {_short(one.get('answer'), 60)!r}")
    _verdict(gate, "effect.critique_prompt", problems,
             f"{_short(one.get('answer'), 40)!r} / {_short(other.get('answer'), 40)!r}")
    counts = [len(t.get("rounds") or []) for t in (one, two)]
    _verdict(gate, "effect.critique_rounds", [] if counts == [1, 2] else [f"rounds 1 and 2 gave {counts} rounds"],
             "rounds=1: 1 round, rounds=2: 2 rounds")
    _verdict(gate, "effect.critique_conversation", conversation_problems(one),
             "each step's model received the prompt, the answer, the critique and the requests its step needs")
    longer = _critique(http, gate, "effect.critique_max_new_tokens", tokens=LONG)
    short_words, long_words = max(map(words, _trace_texts(one))), max(map(words, _trace_texts(longer)))
    problems = [f"max_new_tokens=6: a text of {short_words} words"] if short_words > 7 else []
    if long_words <= short_words:
        problems.append(f"max_new_tokens={LONG}: its longest text has {long_words} words, at 6: {short_words}")
    _verdict(gate, "effect.critique_max_new_tokens", problems,
             f"longest text: {short_words} words at 6 tokens, {long_words} at {LONG}")
    again = _critique(http, gate, "effect.critique_seed")
    draws = [_critique(http, gate, "effect.critique_seed", seed=s) for s in SEEDS]
    problems = [] if again == one else ["seed 3 twice gave two traces"]
    requests = {(r["rounds"] or [{}])[0].get("critique_request") for r in (one, *draws)}
    if len(requests) == 1:
        problems.append(f"seeds 3, {', '.join(map(str, SEEDS))} all drew {_short(requests.pop(), 60)!r}")
    _verdict(gate, "effect.critique_seed", problems, f"seed 3 repeats; {len(requests)} critique requests from 4 seeds")


def _norm(text: str | None) -> str:
    return " ".join((text or "").split())


def conversation_problems(trace: dict) -> list[str]:
    """What each SL-CAI step's model did not receive of what the method gives it (`sent`: the text the
    model was given, decoded from its token ids): the critique sees the prompt, the answer and the
    critique request; the paper's revision all that plus the critique and the revision request."""
    first = (trace.get("rounds") or [{}])[0]
    parts = {"prompt": trace.get("prompt"), "answer": trace.get("answer"), "critique request": first.get("critique_request"),
             "critique": first.get("critique"), "revision request": first.get("revision_request")}
    needs = {"answer": ["prompt"], "critique": ["prompt", "answer", "critique request"],
             "revision": ["prompt", "answer", "critique request", "critique", "revision request"],
             "reply": ["prompt", "critique"], "decline": ["prompt"]}
    sent = {"answer": trace.get("sent"), **(first.get("sent") or {})}
    problems = []
    for step, wanted in needs.items():
        if not isinstance(sent.get(step), str):
            problems.append(f"no record of what the {step} step sent")
            continue
        missing = [w for w in wanted if _norm(parts[w]) not in _norm(sent[step])]
        if missing:
            problems.append(f"the {step} step's model did not receive the {', '.join(missing)}")
    return problems


# ---- POST /api/train ------------------------------------------------------------------------

def _started(http: httpx.Client, preset: str, seed: int) -> dict:
    """A job of `preset` and `seed`, as seen once it has planned its steps, then cancelled."""
    job = api.start_training(http, preset, seed=seed, until=lambda j: (j.get("total_steps") or 0) > 0, timeout=60)
    http.post(f"/api/train/{job['job_id']}/cancel", timeout=30)
    api.poll_job(http, job["job_id"], timeout=120)
    return job


def train_preset(http: httpx.Client, gate: Gate, preset: str, other: str = "quick") -> None:
    """Two presets plan different work: each job names its preset, and their step counts differ."""
    cid = "effect.train_preset"
    jobs = {p: _started(http, p, 42) for p in (preset, other)}
    problems = [f"asked {p}, the job says {j.get('preset')!r}" for p, j in jobs.items() if j.get("preset") != p]
    steps = {p: j.get("total_steps") for p, j in jobs.items()}
    if steps[preset] == steps[other]:
        problems.append(f"{preset} and {other} both plan {steps[preset]} steps")
    _verdict(gate, cid, problems, ", ".join(f"{p}: {s} steps" for p, s in steps.items()))


def train_seed(http: httpx.Client, gate: Gate, job: dict, seed: int) -> None:
    """The seed a finished run was started with is the one its job and run record carry, and a run
    with another seed draws other critique requests for the same prompts."""
    cid = "effect.train_seed"
    record = _json(http.get(f"/api/runs/{job.get('run_id')}", timeout=10)) or {}
    problems = [f"started with seed {seed}: job {job.get('seed')!r}, run record {record.get('seed')!r}"] \
        if (job.get("seed"), record.get("seed")) != (seed, seed) else []
    other = api.start_training(http, job.get("preset"), seed=seed + 1, timeout=300)
    if other.get("state") != "succeeded":
        problems.append(f"the run with seed {seed + 1} ended {other.get('state')!r}")
    elif _requests(job) == _requests(other):
        problems.append(f"seeds {seed} and {seed + 1} drew the same critique requests and principles")
    _verdict(gate, cid, problems, f"seed {seed} recorded; seed {seed + 1} drew other critique requests")


def _requests(job: dict) -> list[tuple[Any, Any]]:
    return [(r.get("principle"), r.get("critique_request")) for t in job.get("trace") or [] for r in t.get("rounds") or []]


# ---- POST /api/impact -----------------------------------------------------------------------

def impact(http: httpx.Client, gate: Gate) -> None:
    """With a trained model: `limit` sets the prompts per set, max_new_tokens bounds every answer,
    and the same seed gives the same report."""
    def run(limit: int, tokens: int, seed: int = 1) -> dict:
        return _post(http, gate, "effect.impact_limit", "/api/impact",
                     {"limit": limit, "max_new_tokens": tokens, "seed": seed}, timeout=600)

    small, larger, again = run(2, 6), run(3, LONG), run(2, 6)
    problems = []
    for limit, report in ((2, small), (3, larger)):
        sets = report.get("sets") or {}
        if not sets or set(sets.values()) != {limit} or report.get("prompts") != limit * len(sets):
            problems.append(f"limit={limit}: sets {sets}, prompts {report.get('prompts')}")
    _verdict(gate, "effect.impact_limit", problems, f"limit 2: {small.get('sets')}; limit 3: {larger.get('sets')}")
    answers = {n: [e.get(k) for e in r.get("examples") or [] for k in ("base", "trained")]
               for n, r in ((6, small), (LONG, larger))}
    most = {n: max(map(words, a), default=0) for n, a in answers.items()}
    problems = [f"max_new_tokens=6: an answer of {most[6]} words"] if most[6] > 7 else []
    if most[LONG] <= most[6]:
        problems.append(f"max_new_tokens={LONG}: longest answer {most[LONG]} words, at 6: {most[6]}")
    _verdict(gate, "effect.impact_max_new_tokens", problems,
             f"longest answer: {most[6]} words at 6 tokens, {most[LONG]} at {LONG}")
    same = {k: small.get(k) for k in ("summary", "examples")} == {k: again.get(k) for k in ("summary", "examples")}
    _verdict(gate, "effect.impact_seed", [] if same else ["seed 1 twice gave two different reports"],
             "seed 1 twice: the same answers and summary")


# ---- POST /api/models/load ------------------------------------------------------------------

def load_model(http: httpx.Client, gate: Gate, other: str = "tiny") -> None:
    """Loading another registry model makes it the current one (its name and size), and greedy
    answers change; the model that was loaded is loaded back."""
    cid = "effect.load_model"
    before = (_json(http.get("/api/models", timeout=10)) or {}).get("current") or {}
    first = _text(_ask(http, gate, cid, OTHER_PROMPT))
    try:
        loaded = _post(http, gate, cid, "/api/models/load", {"model": other}, timeout=300)
        now = (_json(http.get("/api/models", timeout=10)) or {}).get("current") or {}
        answer = _text(_ask(http, gate, cid, OTHER_PROMPT))
    finally:
        http.post("/api/models/load", json={"model": before.get("name")}, timeout=300)
    problems = [f"loaded {other!r}: the answer says {loaded.get('model')!r}, GET /api/models {now.get('name')!r}"] \
        if (loaded.get("model"), now.get("name")) != (other, other) else []
    if now.get("parameters") == before.get("parameters"):
        problems.append(f"{other} has as many parameters as {before.get('name')} ({now.get('parameters')})")
    if answer == first:
        problems.append(f"{other} answers as {before.get('name')} did: {_short(answer, 60)!r}")
    _verdict(gate, cid, problems,
             f"{before.get('name')} ({before.get('parameters')}) -> {other} ({now.get('parameters')}) and back")
