"""A subject for the effect checks' self-tests (tests/test_gate_effects.py): the StubApp
(validation/testing/stub_app.py) with a fake model whose answers follow every request field as
docs/http-api.md says, and faults that break one field's effect each:

    prompt_ignored       every prompt gets the same answer
    tokens_ignored       max_new_tokens is not applied (every answer is 30 words)
    seed_ignored         sampling draws from the prompt alone, whatever the seed
    temperature_ignored  every request samples, temperature 0 included
    compare_ignored      the trained model answers even with compare=false
    tokens_shared        requests decoded together all take the last one's max_new_tokens
    mode_ignored         every evaluation mode does the rules' work
    rounds_ignored       a critique always has one round
    critique_seed_ignored  every seed draws the same critique request
    answer_not_sent      the critique step's model is not given the answer it critiques
    preset_ignored       every training preset plans the smoke preset's steps
    train_seed_ignored   a second run with another seed draws what the first drew
    limit_ignored        an impact report has 4 prompts per set whatever the limit
    load_ignored         loading a model keeps the current one

Routes are small handlers in a table, checked before StubApp's own.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from typing import Any

from validation.checks.effects import JUDGE_ONLY, RULES_ONLY
from validation.testing.stub_app import StubApp

JS = "application/json"
VOCAB = "the a dragon bread oven fire flour morning village stone river cloud baker sings warm golden".split()
MODELS = {"smollm2": 134515008, "tiny": 1127808}
PRESET_STEPS = {"smoke": 25, "quick": 152, "standard": 450}
REQUESTS = ("Critique for harm.", "Critique for honesty.", "Critique for fairness.", "Critique for autonomy.")


def _rng(*parts: Any) -> random.Random:
    return random.Random(hashlib.sha256(repr(parts).encode()).digest())


class EffectStub(StubApp):
    def __init__(self, faults: set[str] | None = None, **kw: Any) -> None:
        super().__init__(faults, **kw)
        self.model = "smollm2"
        self.last_tokens = 0
        self.train_seeds: list[int] = []
        self._lock = threading.Lock()
        self.routes = {("POST", "/api/generate"): self._generate, ("POST", "/api/evaluate"): self._evaluate,
                       ("POST", "/api/critique"): self._critique, ("POST", "/api/impact"): self._impact,
                       ("POST", "/api/models/load"): self._load, ("GET", "/api/models"): self._models,
                       ("POST", "/api/train"): self._train}

    def route(self, method: str, path: str, payload: dict | None) -> tuple[int, Any, str]:
        handler = self.routes.get((method, path))
        if handler is None:
            code, body, ctype = super().route(method, path, payload)
            if path.startswith("/api/train/") and isinstance(body, dict) and body.get("job_id"):
                self._planned(body)
            if path.startswith("/api/runs/") and isinstance(body, dict):
                body = {**body, "seed": next((j["seed"] for j in self.jobs.values() if j["run_id"] == body.get("run_id")), None)}
            return code, body, ctype
        return handler(payload or {})

    # -- the fake model
    def text(self, prompt: str, tokens: int, temperature: float, seed: int, model: str | None = None) -> str:
        f = self.faults
        if "tokens_shared" in f:
            with self._lock:
                self.last_tokens = tokens
            time.sleep(1.0)  # decoded together with whatever arrives meanwhile (a busy host included)
            tokens = self.last_tokens
        n = 30 if "tokens_ignored" in f else tokens
        sample = temperature > 0 or "temperature_ignored" in f
        key = ("same prompt" if "prompt_ignored" in f else prompt, model or self.model,
               (None if "seed_ignored" in f else seed) if sample else "greedy")
        rng = _rng(*key)
        return " ".join(rng.choice(VOCAB) for _ in range(n))

    def _generate(self, p: dict) -> tuple[int, Any, str]:
        args = (p["prompt"], p.get("max_new_tokens", 64), p.get("temperature", 0.7), p.get("seed", 0))
        trained = self.trained_run if (p.get("compare", True) or "compare_ignored" in self.faults) else None
        ev = {"flagged": False, "flagged_principles": [], "alignment_score": 1.0}

        def answer(model: str) -> dict:
            text = self.text(*args, model=model)
            return {"text": text, "evaluation": ev, "elapsed_s": 0.01, "tokens": len(text.split()), "batch_size": 1}
        return 200, {"prompt": p["prompt"], "base": answer(self.model),
                     "trained": answer("trained") if trained else None, "run_id": trained}, JS

    def _evaluate(self, p: dict) -> tuple[int, Any, str]:
        mode, text = p.get("mode", "rules"), p["text"]
        if text not in (RULES_ONLY, JUDGE_ONLY):
            return super().route("POST", "/api/evaluate", p)
        does = "rules" if "mode_ignored" in self.faults else mode
        flagged = {"rules": text == RULES_ONLY, "judge": text == JUDGE_ONLY,
                   "both": text in (RULES_ONLY, JUDGE_ONLY)}.get(does, False)
        return 200, {"mode": mode, "flagged": flagged, "flagged_principles": ["truthfulness"] if flagged else [],
                     "alignment_score": 0.8 if flagged else 1.0, "agreement": 0.75 if mode == "both" else None,
                     "elapsed_s": 0.001}, JS

    def _critique(self, p: dict) -> tuple[int, Any, str]:
        prompt, tokens, seed = p["prompt"], p.get("max_new_tokens", 64), p.get("seed", 0)
        rounds = 1 if "rounds_ignored" in self.faults else p.get("rounds", 1)
        draw = _rng("critique", 0 if "critique_seed_ignored" in self.faults else seed)
        answer = self.text(prompt, tokens, 0.0, seed)
        trace = {"prompt": prompt, "answer": answer, "rounds": [], "sent": f"<user>{prompt}"}
        for i in range(rounds):
            request, critique = draw.choice(REQUESTS), self.text(f"critique {i} {prompt}", tokens, 0.0, seed)
            shown = "" if "answer_not_sent" in self.faults else answer
            trace["rounds"].append({
                "principle": "harm_prevention", "critique_request": request, "critique": critique,
                "revision_request": "Revise.", "revision": self.text(f"revision {i} {prompt}", tokens, 0.0, seed),
                "sent": {"critique": f"<user>{prompt} {shown} {request}",
                         "revision": f"<user>{prompt} {answer} {request} {critique} Revise.",
                         "reply": f"<system>{critique} <user>{prompt}", "decline": f"<user>{prompt}"}})
        trace["final"] = trace["rounds"][-1]["revision"]
        return 200, trace, JS

    def _impact(self, p: dict) -> tuple[int, Any, str]:
        limit = 4 if "limit_ignored" in self.faults else p.get("limit", 4)
        tokens = p.get("max_new_tokens", 64)
        sets = {s: limit for s in ("red_team", "safe", "ordinary")}
        examples = [{"set": s, "prompt": f"{s} {i}", "base": self.text(f"{s} {i}", tokens, 0.0, 0),
                     "trained": self.text(f"{s} {i}", tokens, 0.0, 0, model="trained")} for s in sets for i in range(limit)]
        return 200, {"run_id": self.trained_run, "prompts": 3 * limit, "sets": sets, "examples": examples,
                     "summary": {s: {"flagged": {"before": 0, "after": 0}} for s in sets}}, JS

    def _models(self, p: dict) -> tuple[int, Any, str]:
        return 200, {"registry": [{"name": m, "description": "stub"} for m in MODELS], "state": "ready",
                     "current": {"name": self.model, "parameters": MODELS.get(self.model, 1)},
                     "trained_run": self.trained_run}, JS

    def _load(self, p: dict) -> tuple[int, Any, str]:
        model = str(p.get("model"))
        if model in MODELS and "load_ignored" not in self.faults:
            self.model = model
        if model not in MODELS:
            return super().route("POST", "/api/models/load", p)
        return 200, {"model": self.model, "parameters": MODELS[self.model], "trained_run": None}, JS

    def _train(self, p: dict) -> tuple[int, Any, str]:
        code, body, ctype = super().route("POST", "/api/train", p)
        job = self.jobs[body["job_id"]]
        job["seed"] = p.get("seed", 0)
        self.train_seeds.append(job["seed"])
        return code, body, ctype

    def _planned(self, job: dict) -> None:
        """A job as GET /api/train/{id} shows it: its plan by preset, its trace drawn by seed."""
        preset = "smoke" if "preset_ignored" in self.faults else job.get("preset")
        job["total_steps"] = PRESET_STEPS.get(preset, 25)
        seed = self.train_seeds[0] if "train_seed_ignored" in self.faults else job.get("seed")
        draw = _rng("train", seed)
        job["trace"] = [{**t, "prompt": f"p{i}", "rounds": [{"principle": "harm_prevention",
                                                              "critique_request": draw.choice(REQUESTS)}]}
                        for i, t in enumerate(job.get("trace") or [])]
