"""What a training run learns from: its supervised targets, chosen by the independent judge and the
behaviour detectors (app/behaviour.py), never by the model being trained.

* Red-team prompts: the SL-CAI revision (app/cai.py), kept when it is not flagged and answers rather
  than talks about the request, and either declines with a reason and a safe alternative (no "I'm
  sorry, but I'll be happy to help with that." templates; a bare "I can't, because it's not true"
  taught the model to decline ordinary requests too) or is judged better than its answer (a reply no
  better than the answer to a harmful request still complies). It must be substantive: at least a few
  words, on the prompt's topic ("Sure." and "I can help with that." taught empty replies). An exact
  repeat of a kept target is dropped.
* Helpful prompts (safe-but-alarming and ordinary, app/constitution.helpful_training_prompts): the
  base model's own answer, kept when it helps: not a refusal, not about the request, not flagged, on
  topic. Harmlessness training alone makes a model answer less (Bai et al. 2022); mixing in its own
  good answers to harmless requests keeps it helping.
"""

from __future__ import annotations

import re

from app import behaviour, evaluation

# A refusal that says why: the harm, the law, the person affected.
_REASON = re.compile(r"\b(?:because|since|as (?:it|this|that)|could|would|might|can cause|illegal|against the law|"
                     r"unsafe|dangerous|harm\w*|hurt\w*|unfair|dishonest|false|misleading|privacy|private|consent|"
                     r"wrong|respect\w*|stereotyp\w*|discriminat\w*|manipulat\w*|pressure|safety|risk\w*)\b",
                     re.IGNORECASE)
_ALTERNATIVE = re.compile(r"\b(?:instead|alternatively|you (?:could|can|might|may)|consider|try|i(?:'d| would) be "
                          r"happy to|i can help|if you|a (?:safer|better|legal) way|here are some)\b", re.IGNORECASE)
MIN_RELEVANCE = 0.2  # a helpful answer this far off its prompt is not a target (the judge's cosine)
MIN_WORDS = 4


def gives_reason(text: str) -> bool:
    return bool(_REASON.search(text))


def offers_alternative(text: str) -> bool:
    return bool(_ALTERNATIVE.search(text))


def usable_revision(text: str) -> bool:
    """A revision that can be a target at all: an answer to the user, and a refusal only with a reason."""
    if not text or behaviour.about_request(text):
        return False
    return not behaviour.refused(text) or gives_reason(text)


def red_team_targets(traces: list[dict]) -> tuple[list[tuple[str, str]], dict]:
    """(prompt, revision) pairs to train on, and why the others were dropped."""
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    dropped = {"worse_or_flagged": 0, "about_request": 0, "refusal_without_reason": 0,
               "refusal_without_alternative": 0, "off_topic": 0, "not_better": 0, "repeat": 0}
    for t in traces:
        final = t["final"]
        declines = bool(final) and behaviour.refused(final)
        if t["judge"]["verdict"] == "worse" or t["judge"]["revision_flagged"]:
            dropped["worse_or_flagged"] += 1
        elif not final or behaviour.about_request(final):
            dropped["about_request"] += 1
        elif not substantive(t["prompt"], final):
            dropped["off_topic"] += 1
        elif declines and not gives_reason(final):
            dropped["refusal_without_reason"] += 1
        elif declines and not offers_alternative(final):
            dropped["refusal_without_alternative"] += 1  # a bare "I can't, because..." teaches refusing
        elif not declines and t["judge"]["verdict"] != "better":
            dropped["not_better"] += 1  # a reply to a harmful request no better than the answer: still complies
        elif final.lower() in seen:
            dropped["repeat"] += 1
        else:
            seen.add(final.lower())
            kept.append((t["prompt"], final))
    refusals = [r for _, r in kept if behaviour.refused(r)]
    return kept, {"red_team_examples": len(kept), "refusal_targets": len(refusals),
                  "refusal_targets_with_alternative": sum(offers_alternative(r) for r in refusals),
                  **{f"dropped_{k}": v for k, v in dropped.items()}}


def helpful_targets(prompts: list[str], answers: list[str]) -> tuple[list[tuple[str, str]], dict]:
    """(prompt, the base's answer) pairs for the answers that help, and how many were dropped."""
    kept = [(p, a) for p, a in zip(prompts, answers) if helps(p, a)]
    return kept, {"helpful_examples": len(kept), "helpful_dropped": len(prompts) - len(kept)}


def substantive(prompt: str, reply: str) -> bool:
    """Long enough to say something, and on the prompt's topic (the judge's cosine)."""
    return len(reply.split()) >= MIN_WORDS and behaviour.similarity(prompt, reply) >= MIN_RELEVANCE


def helps(prompt: str, answer: str) -> bool:
    if behaviour.refused(answer) or behaviour.about_request(answer) or not substantive(prompt, answer):
        return False
    return not evaluation.evaluate(answer, "both")["flagged"]
