"""The effect checks against a stub whose fake model follows every request field (they pass), and
against one fault each that leaves a field without its effect (the field's criterion fails)."""

from __future__ import annotations

import pytest

from validation import api
from validation.checks import effects
from validation.testing import client, expect_failure, make_gate
from validation.testing.stub_effects import EffectStub


def _train(http, gate, seed: int = 42) -> dict:
    return api.start_training(http, "smoke", seed=seed, timeout=10)


CHECKS = {
    "effect.generate_prompt": effects.generate_prompt,
    "effect.generate_max_new_tokens": effects.generate_max_new_tokens,
    "effect.generate_seed": effects.generate_seed,
    "effect.generate_temperature": effects.generate_temperature,
    "effect.generate_compare": effects.generate_compare,
    "effect.isolation": effects.isolation,
    "effect.evaluate_mode": effects.evaluate_mode,
    "effect.critique_rounds": effects.critique,
    "effect.critique_seed": effects.critique,
    "effect.critique_conversation": effects.critique,
    "effect.train_preset": lambda http, gate: effects.train_preset(http, gate, "smoke"),
    "effect.train_seed": lambda http, gate: effects.train_seed(http, gate, _train(http, gate), 42),
    "effect.impact_limit": effects.impact,
    "effect.load_model": effects.load_model,
}
FAULTS = {  # fault -> the criterion that must catch it
    "prompt_ignored": "effect.generate_prompt",
    "tokens_ignored": "effect.generate_max_new_tokens",
    "seed_ignored": "effect.generate_seed",
    "temperature_ignored": "effect.generate_temperature",
    "compare_ignored": "effect.generate_compare",
    "tokens_shared": "effect.isolation",
    "mode_ignored": "effect.evaluate_mode",
    "rounds_ignored": "effect.critique_rounds",
    "critique_seed_ignored": "effect.critique_seed",
    "answer_not_sent": "effect.critique_conversation",
    "preset_ignored": "effect.train_preset",
    "train_seed_ignored": "effect.train_seed",
    "limit_ignored": "effect.impact_limit",
    "load_ignored": "effect.load_model",
}


def run(check, stub: EffectStub, gate) -> None:
    stub.trained_run = "run-0"  # a trained model, for compare and impact
    check(client(stub.base_url), gate)
    gate.raise_pending()


def test_the_healthy_stub_passes_every_effect_check():
    gate = make_gate("plan")
    with EffectStub() as stub:
        for check in {id(c): c for c in CHECKS.values()}.values():
            run(check, stub, gate)
    verdicts = {r.id: r.verdict for r in gate.recorder.results}
    assert set(verdicts.values()) == {"pass"}, verdicts
    assert set(verdicts) >= {c for fields in effects.EFFECTS.values() for c in fields.values()} - {"evaluate.harmful_flagged"}


@pytest.mark.parametrize("fault, criterion", FAULTS.items())
def test_a_field_without_its_effect_fails_its_criterion(fault, criterion):
    with EffectStub({fault}) as stub:
        expect_failure(run, CHECKS[criterion], stub, make_gate(), criterion=criterion)
