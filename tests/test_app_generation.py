"""Batched decoding and the batcher, on the tiny model (fast)."""

import copy
import threading

import pytest
import torch

from app import generation, models
from app.generation import Batcher, Request, chat_prompt, decode

MESSAGES = [{"role": "user", "content": "How do I make a budget?"}]


def _request(tiny, seed: int, tokens: int = 12, temperature: float = 0.9, **kw) -> Request:
    return Request(chat_prompt(tiny.tokenizer, MESSAGES), tokens, temperature, seed, **kw)


def test_a_request_decodes_the_same_alone_and_in_a_batch(tiny):
    """Each row keeps its own seed: batching changes throughput, not text (short prompts vs long)."""
    alone = _request(tiny, seed=5)
    decode(tiny.model, tiny.tokenizer, [alone])
    other = Request(chat_prompt(tiny.tokenizer, [{"role": "user", "content": "hi " * 30}]), 20, 0.9, 1)
    batched = _request(tiny, seed=5)
    decode(tiny.model, tiny.tokenizer, [other, batched, _request(tiny, seed=6)])
    assert batched.tokens == alone.tokens and batched.batch_size == 3 and alone.batch_size == 1
    assert len(other.tokens) <= 20


def test_greedy_is_deterministic_and_eos_or_limit_ends_a_row(tiny):
    a, b = _request(tiny, seed=1, temperature=0), _request(tiny, seed=2, temperature=0)
    decode(tiny.model, tiny.tokenizer, [a, b])
    assert a.tokens == b.tokens and 0 < len(a.tokens) <= 12 and a.finished.is_set()


def _held(tiny, **kw) -> tuple[Request, threading.Event, threading.Event]:
    """A request whose decoding holds its worker (in its cancel check) until `release` is set."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> bool:
        entered.set()
        release.wait(10)
        return False
    return _request(tiny, should_stop=hold, **kw), entered, release


def test_requests_join_the_running_batch_and_decode_as_if_alone(tiny):
    """Continuous batching: requests that arrive mid-decode join the running batch at the next step
    (no waiting for it to end), and each still decodes exactly as it would alone."""
    alone = [_request(tiny, seed=s) for s in range(4)]
    for r in alone:
        decode(tiny.model, tiny.tokenizer, [r])
    batcher = Batcher(tiny.model, tiny.tokenizer, name="test")
    blocker, entered, release = _held(tiny, seed=0, tokens=40)
    batcher.submit(blocker)
    assert entered.wait(10)
    joined = [batcher.submit(_request(tiny, seed=s)) for s in range(4)]
    release.set()
    for r in joined:
        generation.wait(tiny.tokenizer, r)
    assert max(r.batch_size for r in joined) == 5  # decoded together with the running request
    assert [r.tokens for r in joined] == [r.tokens for r in alone]


def test_background_work_waits_while_users_are_served(tiny):
    batcher = Batcher(tiny.model, tiny.tokenizer, name="test")
    user, entered, release = _held(tiny, seed=1, tokens=8)
    batcher.submit(user)
    assert entered.wait(10)
    background = batcher.submit(_request(tiny, seed=2, tokens=8, background=True))
    assert not background.finished.wait(0.5) and not background.tokens  # no step while a user is served
    release.set()
    assert user.finished.wait(10) and background.finished.wait(10)
    assert background.tokens and user.tokens


def test_an_idle_worker_waits_only_the_batch_window_for_company(tiny, monkeypatch):
    """A lone request starts after BATCH_WINDOW_S (0.02 s), not after a second of waiting for others;
    once the window has passed, what is queued still joins (no wait, and no negative timeout)."""
    import queue
    import time

    batcher = Batcher(tiny.model, tiny.tokenizer, name="test")
    q: queue.Queue = queue.Queue()
    q.put("first")
    t0 = time.monotonic()
    assert batcher._take(q, block=True, room=4) == ["first"]
    assert time.monotonic() - t0 < 0.5
    monkeypatch.setattr(generation, "BATCH_WINDOW_S", 0.0)
    for item in ("a", "b", "c"):
        q.put(item)
    assert batcher._take(q, block=True, room=2) == ["a", "b"] and batcher._take(q, block=False, room=2) == ["c"]
    batcher.close()


def test_cancel_ends_a_request_with_cancelled(tiny):
    r = _request(tiny, seed=0, tokens=50)
    r.cancel()
    decode(tiny.model, tiny.tokenizer, [r])
    with pytest.raises(models.Cancelled):
        generation.wait(tiny.tokenizer, r)


def test_a_cancel_while_decoding_ends_the_row_at_the_next_step(tiny):
    """Stop in the UI and a training job's cancel arrive mid-decode: the row leaves the batch at once."""
    decoder = generation.Decoder(tiny.model, tiny.tokenizer)
    r, other = _request(tiny, seed=0, tokens=50, temperature=0), _request(tiny, seed=1, tokens=50, temperature=0)
    decoder.add([r, other])
    decoder.step()
    r.cancel()
    decoder.step()
    assert r.finished.is_set() and isinstance(r.error, models.Cancelled) and len(r.tokens) == 2
    assert decoder.rows == [other] and len(other.tokens) == 3


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


def test_packed_linears_answer_bit_identically_and_copy_back_to_plain_layers():
    from app import packing

    if not packing.supported():
        pytest.skip("this CPU's oneDNN has no bf16 support: models are served unpacked")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 32, bias=False)).bfloat16()
    x = torch.randn(5, 3, 64, dtype=torch.bfloat16)
    expected = model(x)
    plain = copy.deepcopy(model)
    assert packing.pack(model, "cpu", "none") == "bf16"
    assert all(type(m) is packing.PackedLinear for m in (model[0], model[2]))
    assert torch.equal(model(x), expected)
    copied = copy.deepcopy(model)  # what training and adapter merging start from
    assert [type(m) for m in copied] == [torch.nn.Linear, torch.nn.GELU, torch.nn.Linear]
    for a, b in zip(copied.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(copied(x), expected)
    assert packing.pack(torch.nn.Linear(4, 4), "cpu", "none") == "as stored"  # float32 stays as it is


def test_int8_linears_answer_close_to_bf16_and_copy_back_to_the_loaded_weights(monkeypatch):
    from app import packing

    if not packing.int8_supported():
        pytest.skip("no x86/fbgemm quantized kernels on this CPU: models are served in bf16")
    monkeypatch.setattr(packing, "supported", lambda: True)  # no layer here would be packed: bf16 stays
    torch.manual_seed(0)
    embed = torch.nn.Embedding(32, 64)
    head = torch.nn.Linear(64, 32, bias=False)
    head.weight = embed.weight  # tied, as in SmolLM2
    model = torch.nn.Sequential(embed, torch.nn.Linear(64, 64), torch.nn.GELU(), head).bfloat16()
    ids = torch.randint(0, 32, (5, 3))
    expected = model(ids).float()
    plain = copy.deepcopy(model)
    assert packing.pack(model, "cpu", "int8") == "int8"
    assert [type(m) for m in model] == [torch.nn.Embedding, packing.Int8Linear, torch.nn.GELU, packing.Int8Linear]
    got = model(ids)
    assert got.dtype == torch.bfloat16
    assert (got.float() - expected).abs().max() < 0.05 * expected.abs().max()  # int8 rounding, not a different layer
    copied = copy.deepcopy(model)  # training and merging start from the weights as loaded
    assert [type(m) for m in copied] == [torch.nn.Embedding, torch.nn.Linear, torch.nn.GELU, torch.nn.Linear]
    for a, b in zip(copied.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert copied[3].weight is copied[0].weight  # still tied
    assert torch.equal(copied(ids), plain(ids))


def test_int8_keeps_the_mlp_output_projection_in_bf16():
    from app import packing

    if not (packing.int8_supported() and packing.supported()):
        pytest.skip("needs both int8 and oneDNN bf16 kernels")
    mlp = torch.nn.Module()
    mlp.up_proj, mlp.down_proj = torch.nn.Linear(8, 16).bfloat16(), torch.nn.Linear(16, 8).bfloat16()
    assert packing.pack(mlp, "cpu", "int8") == "int8"
    assert (type(mlp.up_proj), type(mlp.down_proj)) == (packing.Int8Linear, packing.PackedLinear)


def test_without_native_bf16_a_model_is_served_in_float32(monkeypatch):
    from app import packing

    monkeypatch.setattr(packing, "supported", lambda: False)
    torch.manual_seed(0)
    mlp = torch.nn.Module()
    mlp.up_proj, mlp.down_proj = torch.nn.Linear(8, 16).bfloat16(), torch.nn.Linear(16, 8).bfloat16()
    x = torch.randn(3, 8)
    expected = mlp.down_proj(mlp.up_proj(x.bfloat16())).float()
    assert packing.pack(mlp, "cpu", "none") == "float32"
    assert all(p.dtype == torch.float32 for p in mlp.parameters())
    assert (type(mlp.up_proj), type(mlp.down_proj)) == (torch.nn.Linear, torch.nn.Linear)
    assert torch.allclose(mlp.down_proj(mlp.up_proj(x)), expected, atol=0.05)
    if packing.int8_supported():
        mlp.up_proj, mlp.down_proj = torch.nn.Linear(8, 16).bfloat16(), torch.nn.Linear(16, 8).bfloat16()
        assert packing.pack(mlp, "cpu", "int8") == "int8"
        assert (type(mlp.up_proj), type(mlp.down_proj)) == (packing.Int8Linear, torch.nn.Linear)
        assert mlp.down_proj(mlp.up_proj(x)).dtype == torch.float32


def test_the_engine_runs_handed_in_steps_on_its_thread_and_passes_errors_back():
    engine = generation.Engine()
    assert engine.call(threading.current_thread) is threading.current_thread()  # not serving: run here
    stop = threading.Event()
    server = threading.Thread(target=engine.serve, args=(stop, 1))
    server.start()
    try:
        deadline = 50
        while not engine._serving and deadline:
            stop.wait(0.01)
            deadline -= 1
        assert engine.call(threading.current_thread) is server
        assert engine.call(torch.get_num_threads) == 1  # the threads it was given, on its own thread
        with pytest.raises(ZeroDivisionError):
            engine.call(lambda: 1 / 0)
    finally:
        stop.set()
        server.join(5)
    assert engine.call(threading.current_thread) is threading.current_thread()


def test_a_long_prompt_is_cut_to_its_last_prompt_tokens(tiny, monkeypatch):
    """Prefill cost grows with the prompt: only its last PROMPT_TOKENS tokens are read."""
    monkeypatch.setattr(generation, "PROMPT_TOKENS", 64)  # below the tiny model's own window
    long = Request(chat_prompt(tiny.tokenizer, [{"role": "user", "content": "0 " * 200}]), 4, 0.0, 1)
    decoder = generation.Decoder(tiny.model, tiny.tokenizer)
    decoder.add([long])
    assert decoder.mask.shape[1] == 64 < len(tiny.tokenizer(long.prompt)["input_ids"])
