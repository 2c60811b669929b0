"""The SL-CAI loop (Bai et al. 2022, supervised stage): answer, then for each round a randomly
drawn principle's critique request, a critique, its paired revision request, and a revision.

Few-shot examples in Human/Assistant format keep a small model in role; every step of the trace
is returned so the UI can show it. Seeded: the same seed gives the same trace.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from app import constitution
from app.models import LoadedModel, generate

FEW_SHOT = (Path(__file__).parent / "data" / "few_shot.txt").read_text(encoding="utf-8").strip() + "\n\n"
# A small model keeps writing the next turn: cut its output where a new turn starts.
_TURN = re.compile(r"\n\s*(Human|Assistant|Critique Request|Critique|Revision Request|Revision)\s*:|\n\n")


def _clean(text: str) -> str:
    return _TURN.split(text, maxsplit=1)[0].strip()


def dialogue(prompt: str) -> str:
    return f"Human: {prompt}\nAssistant:"


def run(lm: LoadedModel, prompt: str, *, rounds: int, seed: int, max_new_tokens: int,
        temperature: float = 1.0, should_stop: Callable[[], bool] | None = None) -> dict:
    """One prompt through answer -> (critique -> revision) x rounds. Returns the whole trace."""
    rng = random.Random(seed)

    def sample(context: str) -> str:
        return _clean(generate(lm, context, max_new_tokens=max_new_tokens, temperature=temperature,
                               seed=rng.randrange(2**31), should_stop=should_stop))

    context = FEW_SHOT + dialogue(prompt)
    answer = sample(context) or "(no answer)"
    context += f" {answer}\n"
    trace = {"prompt": prompt, "answer": answer, "rounds": []}
    current = answer
    for _ in range(rounds):
        principle = rng.choice(constitution.PRINCIPLES)
        critique_request, revision_request = principle.random_pair(rng)
        context += f"Critique Request: {critique_request}\nCritique:"
        critique = sample(context) or "(no critique)"
        context += f" {critique}\nRevision Request: {revision_request}\nRevision:"
        revision = sample(context) or current
        context += f" {revision}\n"
        trace["rounds"].append({"principle": principle.name, "critique_request": critique_request,
                                "critique": critique, "revision_request": revision_request,
                                "revision": revision})
        current = revision
    trace["final"] = current
    return trace
