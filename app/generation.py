"""Text generation: chat formatting, requests, and the worker that serves one model's requests.

* ``chat_prompt``: the messages in the tokenizer's chat template (with the app's system prompt);
  a model without a template gets the Human/Assistant few-shot form.
* ``Request``: one generation with its own seed, temperature (0 = greedy), top-k, token limit and
  cancel check; the worker fills in its tokens, timing and the largest batch it was decoded in.
* ``Worker``: per served model, a thread that takes queued requests, interactive ones first.
  Background requests (a training job's SL-CAI data) are only admitted while no user is waiting or
  being served, and training's optimizer steps wait the same way (``yield_to_interactive``), so a
  user's generation never queues behind training. The default model is served by OpenVINO GenAI's
  continuous batching (app/engine.py); ``TorchWorker`` here is the short path for models the engine
  cannot take (``tiny``, hub ids): one request at a time with a KV cache.
* Serving metrics (app/metrics.py), by priority: tokens, time to first token and per output token;
  queue depth and batch size are read from the live workers at each scrape.
"""

from __future__ import annotations

import atexit
import collections
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app import metrics

log = logging.getLogger(__name__)

SYSTEM_PROMPT = ("You are a helpful assistant in a Constitutional AI demo. "
                 "Answer the user's request directly in a few sentences.")
FEW_SHOT_FILE = Path(__file__).parent / "data" / "few_shot.txt"
MAX_BATCH = 32  # requests decoded together by one model's worker
YIELD_MAX_S = 10.0  # background work waits at most this long per step for interactive work to end
# A prompt's last tokens kept (the chat template's end, with the request, is there). Prefill cost
# grows with the prompt: a 4000-character prompt of digits is 4000 tokens, and the critique loop
# prefills it about 7 times a round, which held the engine for minutes (found by schemathesis).
PROMPT_TOKENS = 1024
REPETITION_PENALTY = 1.15  # small models loop without it


class Cancelled(Exception):
    """Raised inside generation or training when a cancel was asked for."""


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, messages: list[dict[str, str]], system: str | None = SYSTEM_PROMPT) -> str:
    """The text a model continues for `messages` (user/assistant turns, ending with a user turn)."""
    if has_chat_template(tokenizer):
        full = ([{"role": "system", "content": system}] if system else []) + messages
        return tokenizer.apply_chat_template(full, add_generation_prompt=True, tokenize=False)
    # No template (the tiny GPT-2-style model): Human/Assistant few-shot, as in the CAI paper. The
    # few-shot block stands for the default system prompt; another one (a revision's guide) comes
    # before the turns, so the model is given it too.
    guide = f"{system}\n" if system and system != SYSTEM_PROMPT else ""
    turns = "".join(f"{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}\n" for m in messages)
    return _few_shot() + guide + turns + "Assistant:"


@functools.cache
def _few_shot() -> str:
    return FEW_SHOT_FILE.read_text(encoding="utf-8").strip() + "\n\n"


def eos_ids(tokenizer, generation_config) -> set[int]:
    ids = {tokenizer.eos_token_id, getattr(generation_config, "eos_token_id", None)}
    flat: set[int] = set()
    for i in ids:
        flat.update(i if isinstance(i, list) else [i])
    return {i for i in flat if i is not None}


def prompt_ids(tokenizer, request: Request, window: int) -> list[int]:
    """The prompt's token ids as the model reads them: its last PROMPT_TOKENS, leaving room in the
    model's `window` for the answer."""
    ids = tokenizer(request.prompt, add_special_tokens=False)["input_ids"]
    keep = max(1, min(PROMPT_TOKENS, window - request.max_new_tokens))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return ids[-keep:] or [pad]


@dataclass(eq=False)
class Request:
    """One generation: what to continue and how; filled in by the worker."""

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
    background: bool = False  # a training job's generation: yields to interactive requests
    elapsed_s: float = 0.0  # from its first decoding step to its end
    batch_size: int = 0  # how many requests were decoded together with it (the largest batch)
    seen: list[int] = field(default_factory=list)  # the prompt's token ids as the model received them
    queued_at: float = field(default_factory=time.perf_counter)  # made as it is queued: time to first token counts from here
    started_at: float = 0.0
    ended_eos: bool = False  # ended at end-of-text (its last step produced no token of the answer)

    def cancel(self) -> None:
        self._cancel.set()

    def stopped(self) -> bool:
        return self._cancel.is_set() or bool(self.should_stop and self.should_stop())


# The live workers: the queue-depth and batch-size gauges are read from them at each scrape.
_WORKERS: weakref.WeakSet[Worker] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()  # a scrape reads the set while a model load adds to it


def _live() -> list[Worker]:
    with _LIVE_LOCK:
        return list(_WORKERS)


def queued(background: bool) -> int:
    """Requests waiting in the workers' queues of that priority."""
    return sum(len(w._queues[background]) for w in _live())


def decoding(background: bool) -> int:
    """Requests being decoded, of that priority."""
    return sum(1 for w in _live() for r in list(w.live) if r.background == background)


for _background in (False, True):
    _kind = metrics.priority(_background)
    metrics.QUEUE_DEPTH.labels(priority=_kind).set_function(functools.partial(queued, _background))
    metrics.BATCH_SIZE.labels(priority=_kind).set_function(functools.partial(decoding, _background))


@atexit.register
def _close_workers() -> None:
    for worker in _live():
        worker.close()


class Worker:
    """A thread serving one model's requests, interactive first (see the module's docstring).
    Subclasses implement `_serve_once`: take queued requests (`_take`), decode, `_finish` them."""

    def __init__(self, name: str) -> None:
        self._queues: dict[bool, collections.deque[Request]] = {False: collections.deque(), True: collections.deque()}
        self._interactive = 0  # interactive requests queued or being decoded
        self._cond = threading.Condition()
        self._closing = False
        self._retired = False  # ends once what it was given is done
        self.live: list[Request] = []  # being decoded
        self._metrics = {bg: (metrics.GENERATED_TOKENS.labels(priority=metrics.priority(bg)),
                              metrics.FIRST_TOKEN_LATENCY.labels(priority=metrics.priority(bg)),
                              metrics.OUTPUT_TOKEN_LATENCY.labels(priority=metrics.priority(bg)))
                         for bg in (False, True)}
        self._thread = threading.Thread(target=self._run, name=f"generation-{name}", daemon=True)
        with _LIVE_LOCK:
            _WORKERS.add(self)
        self._thread.start()

    def submit(self, request: Request) -> Request:
        with self._cond:
            if self._closing or self._retired:
                raise Cancelled()
            if not request.background:
                self._interactive += 1
            self._queues[request.background].append(request)
            self._cond.notify_all()
        return request

    def run_all(self, requests: list[Request]) -> None:
        """Decode `requests` as interactive work and wait for all; raise the first error."""
        for r in requests:
            self.submit(r)
        for r in requests:
            r.finished.wait()
        for r in requests:
            if r.error is not None:
                raise r.error

    def yield_to_interactive(self, timeout: float = YIELD_MAX_S) -> None:
        """Background work calls this between steps: wait (bounded) while users are being served."""
        with self._cond:
            self._cond.wait_for(lambda: self._interactive == 0, timeout=timeout)

    def retire(self) -> None:
        """Take no more requests; the thread ends (and frees the model) once those it has are done."""
        with self._cond:
            self._retired = True
            self._cond.notify_all()

    def _idle_retired(self) -> bool:
        return self._retired and not self.live and not any(self._queues.values())

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what is queued or being decoded and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _take(self, room: int, block: bool) -> list[Request]:
        """Queued requests to start, at most `room`: interactive ones, or background ones while no
        interactive request is queued or being decoded. `block`: wait (briefly) for one."""
        with self._cond:
            if block:
                self._cond.wait_for(lambda: self._closing or self._retired or self._queues[False] or
                                    (self._queues[True] and self._interactive == 0), timeout=0.5)
            if self._closing:
                return []
            kind = self._queues[False] or (self._queues[True] if self._interactive == 0 else None)
            taken = [kind.popleft() for _ in range(min(room, len(kind)))] if kind else []
        now = time.perf_counter()
        for r in taken:
            r.started_at = now
        return taken

    def _tokens_added(self, request: Request, tokens: list[int]) -> None:
        if tokens and not request.tokens:
            self._metrics[request.background][1].observe(time.perf_counter() - request.queued_at)
        request.tokens += tokens
        self._metrics[request.background][0].inc(len(tokens))

    def _finish(self, request: Request, error: BaseException | None = None) -> None:
        """End a request: its time, its error (None when it ended at end-of-text or its limit)."""
        if request.finished.is_set():
            return
        request.elapsed_s = time.perf_counter() - (request.started_at or request.queued_at)
        request.error = error
        outputs = len(request.tokens) + request.ended_eos  # the end-of-text step was spent too
        if error is None and outputs > 1:
            self._metrics[request.background][2].observe(request.elapsed_s / (outputs - 1))
        request.finished.set()
        if not request.background:
            with self._cond:
                self._interactive -= 1
                self._cond.notify_all()

    def _run(self) -> None:
        try:
            while not self._closing and not self._idle_retired():
                try:
                    self._serve_once()
                except Exception as exc:  # one bad batch must not stop the worker
                    log.exception("generation failed", extra={"batch": len(self.live)})
                    self._fail(exc)
        finally:
            self._fail(Cancelled())
            with self._cond:
                self._closing = True
                pending = [r for q in self._queues.values() for r in q]
                for q in self._queues.values():
                    q.clear()
            for r in pending:
                self._finish(r, Cancelled())
            self._release()

    def _release(self) -> None:
        """Free what decoding held, once the thread ends."""

    def _fail(self, exc: BaseException) -> None:
        for r in self.live:
            self._finish(r, exc)
        self.live = []

    def _serve_once(self) -> None:
        raise NotImplementedError


class TorchWorker(Worker):
    """The plain transformers path: one request at a time, token by token with the KV cache. Each
    request samples with its own torch.Generator, so its text depends on its seed alone."""

    def __init__(self, model, tokenizer, name: str = "model") -> None:
        self.model, self.tokenizer = model, tokenizer
        config = model.config
        self.window = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 2048)
        self.eos = eos_ids(tokenizer, model.generation_config)
        super().__init__(name)

    def _serve_once(self) -> None:
        taken = self._take(room=1, block=True)
        if not taken:
            return
        r = taken[0]
        self.live = [r]
        r.batch_size = 1
        try:
            self._decode(r)
        except Cancelled as exc:
            self._finish(r, exc)
        else:
            self._finish(r)
        self.live = []

    @torch.inference_mode()
    def _decode(self, r: Request) -> None:
        r.seen = prompt_ids(self.tokenizer, r, self.window)
        gen = torch.Generator().manual_seed(r.seed)
        x, cache = torch.tensor([r.seen], device=self.model.device), None
        while len(r.tokens) < r.max_new_tokens:
            if r.stopped() or self._closing:
                raise Cancelled()
            out = self.model(input_ids=x, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
            token = sample(out.logits[0, -1], r, gen)
            if token in self.eos:
                r.ended_eos = True
                return
            self._tokens_added(r, [token])
            x = torch.tensor([[token]], device=self.model.device)


def sample(logits: torch.Tensor, r: Request, gen: torch.Generator) -> int:
    """The next token: repetition penalty on the answer's tokens so far, then greedy or top-k."""
    logits = logits.float().cpu()
    if r.tokens and REPETITION_PENALTY != 1.0:
        seen = torch.tensor(sorted(set(r.tokens)))
        vals = logits[seen]
        logits[seen] = torch.where(vals > 0, vals / REPETITION_PENALTY, vals * REPETITION_PENALTY)
    if r.temperature <= 0:
        return int(logits.argmax())
    vals, ids = torch.topk(logits / r.temperature, min(r.top_k or logits.shape[-1], logits.shape[-1]))
    return int(ids[int(torch.multinomial(torch.softmax(vals, -1), 1, generator=gen))])


def text_of(tokenizer, request: Request) -> str:
    return tokenizer.decode(list(request.tokens), skip_special_tokens=True).strip()


def wait(tokenizer, request: Request) -> str:
    """Block until the request is done; its text, or raise its error (Cancelled on cancel)."""
    request.finished.wait()
    if request.error is not None:
        raise request.error
    return text_of(tokenizer, request)


STREAM_INTERVAL_S = 0.5  # each update costs the browser a render (on a 2-core host, seconds in all)


def stream(tokenizer, requests: list[Request], interval: float = STREAM_INTERVAL_S) -> Iterator[list[str]]:
    """Yield the texts so far of several requests when they changed, about every `interval` seconds
    and as soon as one ends, until all end (the last texts are always yielded)."""
    last = None
    while True:
        all_done = all(r.finished.wait(0) for r in requests)
        texts = [text_of(tokenizer, r) for r in requests]
        if texts != last or all_done:
            yield texts
            last = texts
        if all_done:
            return
        pending = [r for r in requests if not r.finished.is_set()]
        if pending:  # all may have ended since all_done was read: then the next pass yields at once
            pending[0].finished.wait(interval)
