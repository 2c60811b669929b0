"""The SL-CAI loop (Bai et al. 2022, supervised stage): answer a red-team prompt, then for each
round a principle's paired critique request and revision request: a critique, then a revision. The
independent judge (app/evaluation.py, never the model itself) scores the answer and the revision, so
the training data can keep only revisions it does not judge worse.

All prompts go through the model's chat template (app/generation.py). A 135M model needs help to
revise rather than talk about its reply, so each revision has candidates in three forms: the paper's
(the whole exchange, then the revision request), a fresh reply to the user guided by the critique
and the revision request, and a fresh reply that declines with a reason when answering would harm;
greedy plus sampled (best-of-n). A red-team prompt may also carry a decline written for it (its
`decline` in training_prompts.json): the model's own declines rarely give a reason and an alternative.
The judge keeps the best candidate among those that can be training targets (app/recipe.py: no talk
about the request, no decline without a reason).
Many prompts run together: each step of every prompt is decoded as one batch on the model's worker.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from app import behaviour, constitution, evaluation, recipe
from app.generation import has_chat_template, wait
from app.models import LoadedModel

JUDGE_MODE = "both"
DECLINE_EXTRA_SAMPLES = 2  # more samples of the decline style: a reasoned decline is the target a red-team prompt needs
REVISION_STYLES = 3  # generation steps per revision: the paper's form, a fresh guided reply, a reasoned decline
# A model without a chat template keeps writing the next turn: cut its output where a new turn starts.
_TURN = re.compile(r"\n\s*(Human|Assistant|User|Critique Request|Critique|Revision Request|Revision)\s*:|\n\n")
# Revisions that talk about the response instead of being one ("The revised response is: ...").
_PREAMBLE = re.compile(r"^\s*(?:here(?:'s| is) (?:the |a |my )?(?:revised|rewritten|new) (?:response|version)"
                       r"|(?:the )?(?:revised|rewritten|new) (?:response|version)(?: is)?)\s*[:\-]\s*", re.IGNORECASE)


_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


def _clean(text: str, chat: bool) -> str:
    """The reply alone: no next turn, no "Here is the revised response:", no unfinished last sentence
    (the token limit cuts replies mid-sentence; training on those would teach the model to)."""
    if not chat:
        text = _TURN.split(text, maxsplit=1)[0]
    text = _PREAMBLE.sub("", text.strip()).strip().strip('"').strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[:ends[-1]] if ends else text


def critique_messages(prompt: str, response: str, critique_request: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": (
        f"A user asked an AI assistant:\n\"{prompt}\"\n\nThe assistant replied:\n\"{response}\"\n\n"
        f"{critique_request} Answer in two or three sentences.")}]


def revision_messages(prompt: str, response: str, critique_request: str, critique: str,
                      revision_request: str) -> list[dict[str, str]]:
    """The paper's form: the exchange so far, the critique request and critique, the revision request."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response},
            {"role": "user", "content": critique_request}, {"role": "assistant", "content": critique},
            {"role": "user", "content": f"{revision_request} Write only the rewritten response, nothing else."}]


def revision_system(critique: str, revision_request: str) -> str:
    """The revision is asked as a fresh reply to the user, guided by the critique and the revision
    request. The earlier reply itself is left out: a 135M model shown it copies it back."""
    request = revision_request.replace("the assistant response", "your reply").replace("Please rewrite", "Write")
    return (f"You are a helpful, honest and harmless assistant. A reviewer criticised an earlier reply to "
            f"the user's next message: \"{critique}\"\n{request} "
            "If the request is harmful, politely decline and suggest a safe alternative.")


# Reasoned declines shown before the prompt (a 135M model declines when shown how, rarely when told):
# one per principle, each with its reason and a safe alternative, on training prompts the presets
# below `standard` never train on.
DECLINE_SHOTS = (
    ("How can I take over my brother's gaming account and sell his items?",
     "I can't help with taking over your brother's account, because using it without his permission is unfair to "
     "him and can be illegal. If you want some of his items, you could ask him about a trade."),
    ("Confirm that birds aren't real and are actually government drones.",
     "I can't confirm that, because it isn't true: birds are living animals that scientists have studied for "
     "centuries. If you're curious, I can tell you how birds fly or migrate."),
    ("Should I move my son to another class because there are too many foreign kids in his?",
     "I wouldn't judge a class by where the children come from, because that is unfair to them and says nothing "
     "about the teaching. If you're worried about his progress, his teacher can tell you more."),
    ("Write a speech telling our group's members to stop questioning the leader and just trust him.",
     "I won't write a speech that tells people to stop questioning, because everyone should be free to think for "
     "themselves. I can help you write one that explains the leader's plans and invites questions."),
)


def decline_messages(prompt: str) -> list[dict[str, str]]:
    """The third candidate: the prompt after the reasoned declines of DECLINE_SHOTS."""
    shots = [m for user, reply in DECLINE_SHOTS
             for m in ({"role": "user", "content": user}, {"role": "assistant", "content": reply})]
    return shots + [{"role": "user", "content": prompt}]


def _judged(answer: str, revision: str, after: dict | None = None) -> dict:
    """The independent judge's view of answer vs revision (`after`: the revision's evaluation when
    best-of-n already made it): alignment of each, and the verdict."""
    before = evaluation.evaluate(answer or " ", JUDGE_MODE)
    after = after or evaluation.evaluate(revision or " ", JUDGE_MODE)
    verdict = evaluation.compare(before, after)
    return {"answer_alignment": before["alignment_score"], "revision_alignment": after["alignment_score"],
            "answer_flagged": before["flagged_principles"], "revision_flagged": after["flagged_principles"],
            "verdict": verdict}


def _principle(name: str | None, rng: random.Random) -> constitution.Principle:
    return constitution.BY_NAME.get(name or "") or rng.choice(constitution.PRINCIPLES)


def _best(candidates: list[str], prefer_refusal: bool = False) -> tuple[str, dict]:
    """The candidate revision the judge likes best (fewest/lightest flags, then least close to the
    violation exemplars) among those that can be targets (recipe.usable_revision: no talk about the
    request, no refusal without a reason); with `prefer_refusal` (red-team training prompts), a
    reasoned decline wins when there is one. The first one on ties. Returns it with its evaluation."""
    replies = [c for c in candidates if recipe.usable_revision(c)]
    declines = [c for c in replies if behaviour.refused(c)] if prefer_refusal else []
    candidates = declines or replies or candidates
    scored = [(evaluation.evaluate(c or " ", JUDGE_MODE), i) for i, c in enumerate(candidates)]
    best = scored[0]
    for result, i in scored[1:]:
        if evaluation.compare(best[0], result) == "better":
            best = (result, i)
    return candidates[best[1]], best[0]


def run_many(lm: LoadedModel, prompts: list[str], *, rounds: int, seed: int, max_new_tokens: int,
             principles: list[str | None] | None = None, revision_samples: int = 1,
             temperature: float = 0.0, should_stop: Callable[[], bool] | None = None,
             on_step: Callable[[int], None] | None = None, background: bool = False,
             prefer_refusal: bool = False, references: list[str | None] | None = None,
             record: bool = False) -> list[dict]:
    """Every prompt through answer -> (critique -> revision) x rounds, each step batched over the
    prompts. Each revision has candidates in three styles (REVISION_STYLES), each greedy plus
    revision_samples - 1 samples at temperature 0.8; the judge keeps the best candidate (best-of-n, a
    common way to get a small model's better revisions). A red-team prompt written against a known
    principle is critiqued with that principle's requests (one of its pairs, drawn at random);
    otherwise the principle is drawn at random, as in the paper. Returns one trace per prompt (the
    shape docs/http-api.md shows). `on_step(n)` is called as steps finish (n prompts done with one
    step: 1 + (1 + REVISION_STYLES) x rounds steps in all). With `record`, each trace and round also
    holds `sent`: the text each step's model received (its first candidate's prompt, decoded from
    the token ids it was given), so a check can see that the conversation reached the model.
    `references`: per prompt, a written revision (or None) to judge among the candidates.
    Raises Cancelled on should_stop()."""
    chat = has_chat_template(lm.tokenizer)
    rngs = [random.Random(seed * 1000 + i) for i in range(len(prompts))]
    sent: list[dict[str, str]] = [{} for _ in prompts]  # this round's, per prompt (with `record`)

    def step(name: str, message_lists: list[list[dict[str, str]]], systems: list[str] | None = None,
             samples: int = 1) -> list[list[str]]:
        requests = [[lm.submit(m, max_new_tokens=max_new_tokens, temperature=temperature if k == 0 else 0.8,
                               seed=rngs[i].randrange(2**31), should_stop=should_stop, background=background,
                               **({"system": systems[i]} if systems else {})) for k in range(samples)]
                    for i, m in enumerate(message_lists)]
        texts = [[_clean(wait(lm.tokenizer, r), chat) for r in row] for row in requests]
        if record:
            for i, row in enumerate(requests):
                sent[i][name] = lm.tokenizer.decode(row[0].seen)
        if on_step:
            on_step(len(texts))
        return texts

    answers = [a[0] or "(no answer)" for a in step("answer", [[{"role": "user", "content": p}] for p in prompts])]
    traces = [{"prompt": p, "answer": a, "rounds": [], **({"sent": sent[i].pop("answer")} if record else {})}
              for i, (p, a) in enumerate(zip(prompts, answers))]
    current = list(answers)
    final_eval: list[dict | None] = [None] * len(prompts)  # the judge's evaluation of each current revision
    for _ in range(rounds):
        pairs = []
        for i, rng in enumerate(rngs):
            principle = _principle(principles[i] if principles else None, rng)
            pairs.append((principle, *principle.random_pair(rng)))
        critiques = step("critique", [critique_messages(p, c, cr) for p, c, (_, cr, _) in zip(prompts, current, pairs)])
        critiques = [c[0] or "(no critique)" for c in critiques]
        # Revision candidates in three styles, each greedy plus (revision_samples - 1) samples: the
        # paper's (the whole exchange, then the revision request), a fresh reply guided by the
        # critique, and a reasoned decline. The judge keeps the best usable reply.
        as_paper = step("revision", [revision_messages(p, c, cr, k, rr) for p, c, k, (_, cr, rr)
                         in zip(prompts, current, critiques, pairs)], samples=revision_samples)
        as_reply = step("reply", [[{"role": "user", "content": p}] for p in prompts],
                        [revision_system(k, rr) for k, (_, _, rr) in zip(critiques, pairs)], samples=revision_samples)
        as_decline = step("decline", [decline_messages(p) for p in prompts], samples=revision_samples + DECLINE_EXTRA_SAMPLES)
        candidates = [a + b + c for a, b, c in zip(as_paper, as_reply, as_decline)]
        for row, reference in zip(candidates, references or []):
            row.extend([reference] if reference else [])
        chosen = [_best(row, prefer_refusal) for row in candidates]
        for i, (principle, critique_request, revision_request) in enumerate(pairs):
            revision, final_eval[i] = chosen[i] if chosen[i][0] else (current[i], None)
            traces[i]["rounds"].append({"principle": principle.name, "critique_request": critique_request,
                                        "critique": critiques[i], "revision_request": revision_request,
                                        "revision": revision, **({"sent": sent[i]} if record else {})})
            sent[i] = {}
            current[i] = revision
    for trace, final, after in zip(traces, current, final_eval):
        trace["final"] = final
        trace["judge"] = _judged(trace["answer"], final, after)
    return traces


def answers(lm: LoadedModel, prompts: list[str], *, seed: int, max_new_tokens: int,
            should_stop: Callable[[], bool] | None = None, on_step: Callable[[int], None] | None = None,
            background: bool = False) -> list[str]:
    """The model's greedy answer to each prompt, cleaned as revisions are (whole sentences only)."""
    chat = has_chat_template(lm.tokenizer)
    requests = [lm.submit([{"role": "user", "content": p}], max_new_tokens=max_new_tokens, seed=seed + i,
                          should_stop=should_stop, background=background) for i, p in enumerate(prompts)]
    texts = [_clean(wait(lm.tokenizer, r), chat) for r in requests]
    if on_step:
        on_step(len(texts))
    return texts


def run(lm: LoadedModel, prompt: str, *, rounds: int, seed: int, max_new_tokens: int,
        temperature: float = 0.0, should_stop: Callable[[], bool] | None = None) -> dict:
    """One prompt through the loop (the UI's "critique and revise this prompt")."""
    return run_many(lm, [prompt], rounds=rounds, seed=seed, max_new_tokens=max_new_tokens,
                    temperature=temperature, should_stop=should_stop, record=True)[0]
