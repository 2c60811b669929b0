"""The worker and the plain transformers path, on the tiny model (fast); the engine: test_app_engine.py."""

import copy
import threading
import time

import pytest

from app import generation, models
from app.generation import Request, TorchWorker, chat_prompt

MESSAGES = [{"role": "user", "content": "How do I make a budget?"}]


def _request(tiny, seed: int, tokens: int = 12, temperature: float = 0.9, **kw) -> Request:
    return Request(chat_prompt(tiny.tokenizer, MESSAGES), tokens, temperature, seed, **kw)


@pytest.fixture
def worker(tiny):
    w = TorchWorker(tiny.model, tiny.tokenizer, name="test")
    yield w
    w.close()


def _held(tiny, **kw) -> tuple[Request, threading.Event, threading.Event]:
    """A request whose decoding holds its worker (in its cancel check) until `release` is set."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> bool:
        entered.set()
        release.wait(10)
        return False
    return _request(tiny, should_stop=hold, **kw), entered, release


def test_a_seeded_request_decodes_the_same_whatever_ran_before(tiny, worker):
    """Each request samples with its own generator: its text depends on its seed, not on the others."""
    first = generation.wait(tiny.tokenizer, worker.submit(_request(tiny, seed=5)))
    worker.submit(_request(tiny, seed=6))
    again = generation.wait(tiny.tokenizer, worker.submit(_request(tiny, seed=5)))
    other = generation.wait(tiny.tokenizer, worker.submit(_request(tiny, seed=7, tokens=30)))
    assert first == again and first and other != first


def test_greedy_is_deterministic_and_eos_or_limit_ends_a_request(tiny, worker):
    a, b = (worker.submit(_request(tiny, seed=s, temperature=0)) for s in (1, 2))
    generation.wait(tiny.tokenizer, a), generation.wait(tiny.tokenizer, b)
    assert a.tokens == b.tokens and 0 < len(a.tokens) <= 12 and a.finished.is_set() and a.error is None


def test_a_one_token_request_ends_without_error(tiny, worker):
    """Its time per token has no interval to measure (one output): nothing is observed, nothing fails."""
    r = worker.submit(_request(tiny, seed=1, tokens=1, temperature=0))
    generation.wait(tiny.tokenizer, r)
    assert r.error is None and len(r.tokens) + r.ended_eos == 1


def test_users_go_first_and_background_work_waits_while_they_are_served(tiny, worker):
    user, entered, release = _held(tiny, seed=1, tokens=8)
    worker.submit(user)
    assert entered.wait(10)
    background = worker.submit(_request(tiny, seed=2, tokens=8, background=True))
    second_user = worker.submit(_request(tiny, seed=3, tokens=8))
    waited = threading.Thread(target=worker.yield_to_interactive)
    waited.start()
    assert not background.finished.wait(0.5) and not background.tokens and waited.is_alive()
    release.set()
    assert user.finished.wait(10) and second_user.finished.wait(10) and background.finished.wait(10)
    assert second_user.started_at <= background.started_at  # queued after it, served before it
    waited.join(5)
    assert not waited.is_alive() and background.tokens


def test_a_cancel_ends_a_request_with_cancelled_mid_decode(tiny, worker):
    """Stop in the UI and a training job's cancel arrive mid-decode: the request ends at the next token."""
    r, entered, release = _held(tiny, seed=0, tokens=50, temperature=0)
    worker.submit(r)
    assert entered.wait(10)
    r.cancel()
    release.set()
    with pytest.raises(models.Cancelled):
        generation.wait(tiny.tokenizer, r)
    assert len(r.tokens) < 50


def test_a_retired_worker_finishes_what_it_has_then_refuses_more(tiny, worker):
    r = worker.submit(_request(tiny, seed=0, tokens=20))
    worker.retire()
    assert generation.wait(tiny.tokenizer, r)
    with pytest.raises(models.Cancelled):
        worker.submit(_request(tiny, seed=1))
    worker._thread.join(5)
    assert not worker._thread.is_alive()


def test_close_cancels_what_is_queued(tiny, worker):
    user, entered, release = _held(tiny, seed=1, tokens=8)
    worker.submit(user)
    assert entered.wait(10)
    queued = worker.submit(_request(tiny, seed=2))
    closer = threading.Thread(target=worker.close)
    closer.start()
    release.set()
    closer.join(10)
    with pytest.raises(models.Cancelled):
        generation.wait(tiny.tokenizer, queued)


def test_a_model_with_a_chat_template_gets_the_system_prompt_then_the_turns(tiny):
    """The default model's path (tiny has no template): the template renders the system turn first."""
    tokenizer = copy.deepcopy(tiny.tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    turns = MESSAGES + [{"role": "assistant", "content": "Track spending."}, {"role": "user", "content": "More?"}]
    assert chat_prompt(tokenizer, turns) == (f"<system>{generation.SYSTEM_PROMPT}<user>How do I make a budget?"
                                             "<assistant>Track spending.<user>More?<assistant>")
    assert chat_prompt(tokenizer, MESSAGES, system="Be brief.") == "<system>Be brief.<user>How do I make a budget?<assistant>"
    assert chat_prompt(tokenizer, MESSAGES, system=None) == "<user>How do I make a budget?<assistant>"


def test_a_model_without_a_chat_template_gets_the_few_shot_form(tiny):
    text = chat_prompt(tiny.tokenizer, MESSAGES)
    assert text.startswith("Human:") and text.endswith("Human: How do I make a budget?\nAssistant:")


def test_a_long_prompt_is_cut_to_its_last_prompt_tokens(tiny, monkeypatch):
    """Prefill cost grows with the prompt: only its last PROMPT_TOKENS tokens are read."""
    monkeypatch.setattr(generation, "PROMPT_TOKENS", 64)  # below the tiny model's own window
    long = Request(chat_prompt(tiny.tokenizer, [{"role": "user", "content": "0 " * 200}]), 4, 0.0, 1)
    ids = generation.prompt_ids(tiny.tokenizer, long, window=512)
    assert len(ids) == 64 < len(tiny.tokenizer(long.prompt)["input_ids"])
    assert len(generation.prompt_ids(tiny.tokenizer, long, window=40)) == 36  # room left for the answer


def test_an_idle_worker_wakes_for_a_request_at_once_not_at_its_wait_timeout(tiny, worker):
    """The idle wait ends when a request is queued (its 0.5 s timeout only rechecks closing)."""
    for seed in range(3):
        time.sleep(0.6)  # idle: the worker waits in _take
        r = worker.submit(_request(tiny, seed=seed, tokens=2))
        generation.wait(tiny.tokenizer, r)
        assert r.started_at - r.queued_at < 0.25, r.started_at - r.queued_at
