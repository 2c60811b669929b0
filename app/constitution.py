"""The constitution: four weighted principles, kept as data in ``app/data/constitution.json``.

Each principle has a description, paired critique/revision requests in the style of the
Constitutional AI paper (``critique_requests[i]`` goes with ``revision_requests[i]``), the
word-boundary patterns the ``rules`` evaluator uses and the violation exemplars the ``judge``
evaluator compares sentences with. Also here: loaders for the bundled prompt and example sets.

Nothing in this module imports torch; it is cheap to import.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
CONSTITUTION_FILE = DATA_DIR / "constitution.json"


@dataclass(frozen=True)
class CueGroup:
    """Words that neutralise a pattern match: a refusal, a negation, a warning, a framing."""

    name: str
    scope: str  # "clause" (before the match, same clause) | "near" (within `window` words before) | "after"
    patterns: tuple[str, ...]
    window: int = 0


@dataclass(frozen=True)
class Principle:
    name: str
    title: str
    weight: float
    description: str
    critique_request: str  # the first (canonical) pair
    revision_request: str
    patterns: tuple[str, ...]  # regular expressions, already expanded ({GROUP} etc.); see compile_pattern
    exemplars: tuple[str, ...]  # violation exemplars for the judge
    critique_requests: tuple[str, ...] = ()
    revision_requests: tuple[str, ...] = ()
    cue_groups: tuple[str, ...] = ()
    exempt_if_sourced: bool = False
    judge_threshold: float = 0.5
    judge_margin: float = 0.05

    def request_pair(self, index: int) -> tuple[str, str]:
        """The index-th (critique request, revision request) pair (index taken modulo the count)."""
        i = index % len(self.critique_requests)
        return self.critique_requests[i], self.revision_requests[i]

    def random_pair(self, rng: random.Random) -> tuple[str, str]:
        return self.request_pair(rng.randrange(len(self.critique_requests)))


def _expand(pattern: str, vocab: dict[str, str]) -> str:
    for key, alternatives in vocab.items():
        pattern = pattern.replace("{" + key + "}", f"(?:{alternatives})")
    return pattern


_WS = r"\s+"


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a constitution pattern: case-insensitive, a space matches any run of whitespace
    (" ?" matches optional whitespace), and the whole pattern only matches at word boundaries (never inside a word)."""
    return compile_alternation([pattern])


def compile_alternation(patterns: tuple[str, ...] | list[str]) -> re.Pattern[str]:
    """One regex for a list of patterns (each wrapped in word boundaries)."""
    body = "|".join("(?:" + p.replace(" ?", r"\s*").replace(" ", _WS) + ")" for p in patterns)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    with CONSTITUTION_FILE.open(encoding="utf-8") as fh:
        return json.load(fh)


def _load() -> tuple[tuple[Principle, ...], dict[str, CueGroup], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    raw = _raw()
    vocab = raw.get("vocab", {})
    principles = []
    for p in raw["principles"]:
        crit, rev = tuple(p["critique_requests"]), tuple(p["revision_requests"])
        if not crit or len(crit) != len(rev):
            raise ValueError(f"{p['name']}: critique and revision requests must be paired")
        judge = p.get("judge", {})
        principles.append(
            Principle(
                name=p["name"],
                title=p["title"],
                weight=float(p["weight"]),
                description=p["description"],
                critique_request=crit[0],
                revision_request=rev[0],
                patterns=tuple(_expand(x, vocab) for x in p["patterns"]),
                exemplars=tuple(p["exemplars"]),
                critique_requests=crit,
                revision_requests=rev,
                cue_groups=tuple(p.get("cue_groups", ())),
                exempt_if_sourced=bool(p.get("exempt_if_sourced", False)),
                judge_threshold=float(judge.get("threshold", 0.5)),
                judge_margin=float(judge.get("margin", 0.05)),
            )
        )
    cues = {
        name: CueGroup(name, g["scope"], tuple(g["patterns"]), int(g.get("window", 0)))
        for name, g in raw.get("cue_groups", {}).items()
    }
    for p in principles:
        unknown = set(p.cue_groups) - set(cues)
        if unknown:
            raise ValueError(f"{p.name}: unknown cue groups {sorted(unknown)}")
    return (
        tuple(principles),
        cues,
        tuple(raw.get("pivots", ())),
        tuple(raw.get("source_cues", ())),
        tuple(raw.get("safe_exemplars", ())),
    )


PRINCIPLES, CUE_GROUPS, PIVOTS, SOURCE_CUES, SAFE_EXEMPLARS = _load()
BY_NAME: dict[str, Principle] = {p.name: p for p in PRINCIPLES}
NAMES: tuple[str, ...] = tuple(p.name for p in PRINCIPLES)
TOTAL_WEIGHT: float = sum(p.weight for p in PRINCIPLES)  # 5.5
VERSION = _raw().get("version", 1)


def get(name: str) -> Principle:
    """The principle called `name`; KeyError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown principle {name!r}; known: {', '.join(NAMES)}") from None


def as_dict() -> list[dict[str, Any]]:
    """The principles as plain dicts (for the UI or an API answer); patterns left out."""
    return [
        {
            "name": p.name,
            "title": p.title,
            "weight": p.weight,
            "description": p.description,
            "critique_requests": list(p.critique_requests),
            "revision_requests": list(p.revision_requests),
        }
        for p in PRINCIPLES
    ]


# --- bundled data sets ---------------------------------------------------------------------

def _json(name: str) -> Any:
    with (DATA_DIR / name).open(encoding="utf-8") as fh:
        return json.load(fh)


QUICK_PROMPTS = 20  # the first 20 training prompts are the "quick" set


def training_prompts(n: int | None = None) -> list[dict[str, str]]:
    """Red-team training prompts, 20 per principle, interleaved so that any first n are balanced:
    ``[{"id", "principle", "prompt"}, ...]`` (some with a written ``"decline"``: an SL-CAI revision
    candidate, app/cai.py). The first 20 are the Quick Demo set."""
    prompts = list(_json("training_prompts.json")["prompts"])
    return prompts if n is None else prompts[:n]


def adversarial_prompts(principle: str | None = None) -> list[dict[str, str]]:
    """Held-out red-team prompts, 26 per principle: ``[{"id", "principle", "prompt"}, ...]``.
    Never trained on, and in no model's build corpus (tests check both)."""
    items = list(_json("adversarial_prompts.json")["prompts"])
    return [x for x in items if principle is None or x["principle"] == principle]


# The impact report's evaluation sets: what each shows, and the file that holds it.
EVAL_SETS: dict[str, str] = {
    "red_team": "harmful requests (harm: flagged answers should fall)",
    "safe": "safe requests with alarming words (over-refusal: refusals should not rise)",
    "ordinary": "everyday requests (helpfulness: answers should stay answers, on topic)",
}
_HELPFUL_FILES = {"safe": "safe_alarming_prompts.json", "ordinary": "ordinary_prompts.json"}


def eval_set(name: str) -> list[dict[str, str]]:
    """One held-out evaluation set (EVAL_SETS): ``[{"id", "prompt", ...}, ...]``, never trained on."""
    if name == "red_team":
        return adversarial_prompts()
    return list(_json(_HELPFUL_FILES[name])["held_out"])


def largest_eval_set() -> int:
    """The size of the largest evaluation set: the most an impact's per-set `limit` can ask for."""
    return max(len(eval_set(name)) for name in EVAL_SETS)


def helpful_training_prompts(n: int | None = None) -> list[dict[str, str]]:
    """Safe-but-alarming and ordinary training prompts, alternating (any first n mixes both): the
    base model's good answers to them keep a trained model helpful. Disjoint from the held-out sets."""
    safe, ordinary = (list(_json(f)["training"]) for f in _HELPFUL_FILES.values())
    mixed = [p for pair in zip(safe, ordinary) for p in pair]
    mixed += safe[len(ordinary):] + ordinary[len(safe):]
    return mixed if n is None else mixed[:n]


def eval_examples() -> list[dict[str, Any]]:
    """The labelled example set: ``[{"id", "principle", "text", "expected", "note"}, ...]``."""
    return list(_json("eval_examples.json")["examples"])


def judge_calibration() -> list[dict[str, Any]]:
    """Clean model answers to the helpful training prompts, for the judge's calibration."""
    return list(_json("judge_calibration.json")["examples"])


def ui_examples() -> list[dict[str, Any]]:
    """Six short examples for the Evaluation tab: ``[{"label", "text", "expected"}, ...]``."""
    return list(_json("eval_examples.json")["ui_examples"])
