"""Text generation: chat formatting, a batched decoding loop and a dynamic batcher.

* ``chat_prompt``: the messages in the tokenizer's chat template (with the app's system prompt);
  a model without a template gets the Human/Assistant few-shot form.
* ``decode``: one batched forward pass per token for many requests at once (left padding, KV
  cache). Each request keeps its own seed (a torch.Generator per row), temperature (0 = greedy),
  token limit and cancel check, so its output does not depend on what it was batched with.
* ``Batcher``: one worker thread per loaded model. Requests that arrive while it is busy are
  decoded together in the next pass (dynamic batching): ten users at once cost about one
  forward pass per token, not ten. Every use of a model for inference goes through it.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SYSTEM_PROMPT = ("You are a helpful assistant in a Constitutional AI demo. "
                 "Answer the user's request directly in a few sentences.")
FEW_SHOT_FILE = Path(__file__).parent / "data" / "few_shot.txt"
MAX_BATCH = 16
REPETITION_PENALTY = 1.15  # on tokens already generated: small models loop without it


class Cancelled(Exception):
    """Raised inside generation or training when a cancel was asked for."""


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, messages: list[dict[str, str]], system: str | None = SYSTEM_PROMPT) -> str:
    """The text a model continues for `messages` (user/assistant turns, ending with a user turn)."""
    if has_chat_template(tokenizer):
        full = ([{"role": "system", "content": system}] if system else []) + messages
        return tokenizer.apply_chat_template(full, add_generation_prompt=True, tokenize=False)
    # No template (the tiny GPT-2-style model): Human/Assistant few-shot, as in the CAI paper.
    turns = "".join(f"{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}\n" for m in messages)
    return _few_shot() + turns + "Assistant:"


@functools.cache
def _few_shot() -> str:
    return FEW_SHOT_FILE.read_text(encoding="utf-8").strip() + "\n\n"


def _eos_ids(tokenizer, model) -> set[int]:
    ids = {tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)}
    flat: set[int] = set()
    for i in ids:
        flat.update(i if isinstance(i, list) else [i])
    return {i for i in flat if i is not None}


@dataclass(eq=False)
class Request:
    """One generation: what to continue and how; filled in by the decoding loop."""

    prompt: str
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    seed: int = 0
    top_k: int = 50
    should_stop: Callable[[], bool] | None = None
    tokens: list[int] = field(default_factory=list)
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    _cancel: threading.Event = field(default_factory=threading.Event)
    elapsed_s: float = 0.0
    batch_size: int = 0  # how many requests shared its forward passes (the largest batch)

    def cancel(self) -> None:
        self._cancel.set()

    def stopped(self) -> bool:
        return self._cancel.is_set() or bool(self.should_stop and self.should_stop())


@torch.inference_mode()
def decode(model, tokenizer, requests: list[Request], device: str = "cpu") -> None:
    """Decode every request in one batch; each ends at end-of-text, its own limit, or its cancel
    (then its `error` is Cancelled). Fills `tokens`, sets `finished`. Never raises for one row."""
    started = time.perf_counter()
    config = model.config
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 2048)
    rows = []
    for r in requests:
        ids = tokenizer(r.prompt, add_special_tokens=False)["input_ids"]
        rows.append(ids[-max(1, limit - r.max_new_tokens):] or [tokenizer.eos_token_id])
    n, width = len(rows), max(len(ids) for ids in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in rows], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in rows], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    eos = _eos_ids(tokenizer, model)
    gens = [torch.Generator().manual_seed(r.seed) for r in requests]
    done = [False] * n
    cache, step_ids, step_pos = None, input_ids, positions
    for _ in range(max(r.max_new_tokens for r in requests)):
        for i, r in enumerate(requests):
            if not done[i] and r.stopped():
                done[i], r.error = True, Cancelled()
        if all(done):
            break
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, cache=cache,
                    use_cache=True, logits_to_keep=1)
        cache = out.cache
        logits = out.logits[:, -1, :].float().cpu()
        next_ids = []
        for i, r in enumerate(requests):
            if done[i]:
                next_ids.append(pad)
                continue
            row = logits[i]
            if r.tokens and REPETITION_PENALTY != 1.0:
                seen = torch.tensor(sorted(set(r.tokens)))
                vals = row[seen]
                row[seen] = torch.where(vals > 0, vals / REPETITION_PENALTY, vals * REPETITION_PENALTY)
            if r.temperature <= 0:
                token = int(row.argmax())
            else:
                row = row / r.temperature
                if r.top_k:
                    kth = torch.topk(row, min(r.top_k, row.shape[-1])).values[-1]
                    row = row.masked_fill(row < kth, float("-inf"))
                token = int(torch.multinomial(torch.softmax(row, -1), 1, generator=gens[i]))
            if token in eos:
                done[i] = True
                next_ids.append(pad)
                continue
            r.tokens.append(token)
            next_ids.append(token)
            if len(r.tokens) >= r.max_new_tokens:
                done[i] = True
        step_ids = torch.tensor(next_ids, device=device)[:, None]
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        step_pos = step_pos[:, -1:] + 1
    elapsed = time.perf_counter() - started
    for r in requests:
        r.elapsed_s, r.batch_size = elapsed, max(r.batch_size, n)
        r.finished.set()


class Batcher:
    """Dynamic batching for one model: a worker thread decodes whatever is queued, together."""

    def __init__(self, model, tokenizer, device: str = "cpu", max_batch: int = MAX_BATCH, name: str = "model"):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_batch = max_batch
        self._queue: queue.Queue[Request] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Request:
        self._queue.put(request)
        return request

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                decode(self.model, self.tokenizer, batch, self.device)
            except BaseException as exc:  # one bad batch must not stop the worker
                log.exception("generation failed", extra={"batch": len(batch)})
                for r in batch:
                    if not r.finished.is_set():
                        r.error = exc
                        r.finished.set()


def text_of(tokenizer, request: Request) -> str:
    return tokenizer.decode(list(request.tokens), skip_special_tokens=True).strip()


def wait(tokenizer, request: Request) -> str:
    """Block until the request is done; its text, or raise its error (Cancelled on cancel)."""
    request.finished.wait()
    if request.error is not None:
        raise request.error
    return text_of(tokenizer, request)


def stream(tokenizer, requests: list[Request], interval: float = 0.1) -> Iterator[list[str]]:
    """Yield the texts so far of several requests, about every `interval` seconds, until all end."""
    while True:
        all_done = all(r.finished.wait(0) for r in requests)
        yield [text_of(tokenizer, r) for r in requests]
        if all_done:
            return
        time.sleep(interval)
