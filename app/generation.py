"""Text generation: chat formatting, a batched decoding loop and a dynamic batcher.

* ``chat_prompt``: the messages in the tokenizer's chat template (with the app's system prompt);
  a model without a template gets the Human/Assistant few-shot form.
* ``Decoder``: one batched forward pass per token for many requests at once (left padding, KV
  cache), and continuous batching: a request joins the running batch at the next step instead of
  waiting for it to end. Each request keeps its own seed (a torch.Generator per row), temperature
  (0 = greedy), token limit and cancel check, so its output does not depend on what it was batched
  with (up to rounding: in bf16 a greedy answer can change with the batch's size). Rows are kept
  grouped by LoRA adapter, so a trained model served beside its base (app/adapters.py) shares the
  base's forward passes.
* ``Batcher``: per loaded model, a worker thread for interactive requests and one for background
  requests (a training job's SL-CAI data). Requests that arrive while a worker is busy are decoded
  together in its next pass (dynamic batching): ten users at once cost about one forward pass per
  token, not ten. Background work yields: before each of its decoding steps (and each optimizer
  step of a training job) it waits while interactive requests are being served, so a user's
  generation never queues behind a training batch. Every use of a model for inference goes through it.
* ``Engine``: in ``python -m app`` the workers hand each decoding step to the main thread, which
  runs it with TORCH_THREADS threads (see WORKER_THREADS for why; Settings.compute_threads).
* Serving metrics (app/metrics.py), by priority: the Decoder counts tokens and observes time to
  first token and per output token; queue depth and batch size are read from the live batchers and
  decoders at each scrape.
"""

from __future__ import annotations

import atexit
import functools
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app import adapters, metrics

log = logging.getLogger(__name__)

SYSTEM_PROMPT = ("You are a helpful assistant in a Constitutional AI demo. "
                 "Answer the user's request directly in a few sentences.")
FEW_SHOT_FILE = Path(__file__).parent / "data" / "few_shot.txt"
MAX_BATCH = 32  # rows per forward pass: a base and trained pair is two
BATCH_WINDOW_S = 0.02  # after the first request of a batch, wait this long for others to join it
YIELD_MAX_S = 10.0  # background work waits at most this long per step for interactive work to end
BACKGROUND_PREFILL = 4  # background requests prefilled per forward pass
# A prompt's last tokens kept (the chat template's end, with the request, is there). Prefill cost
# grows with the prompt: a 4000-character prompt of digits is 4000 tokens, and the critique loop
# prefills it about 7 times a round, which held the engine for minutes (found by schemathesis).
PROMPT_TOKENS = 1024
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
    # No template (the tiny GPT-2-style model): Human/Assistant few-shot, as in the CAI paper. The
    # few-shot block stands for the default system prompt; another one (a revision's guide) comes
    # before the turns, so the model is given it too.
    guide = f"{system}\n" if system and system != SYSTEM_PROMPT else ""
    turns = "".join(f"{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}\n" for m in messages)
    return _few_shot() + guide + turns + "Assistant:"


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
    background: bool = False  # a training job's generation: yields to interactive requests
    adapter: adapters.Adapter | None = None  # decode with this LoRA adapter on the base (the trained model)
    elapsed_s: float = 0.0
    batch_size: int = 0  # how many requests shared its forward passes (the largest batch)
    seen: list[int] = field(default_factory=list)  # the prompt's token ids as the model received them
    queued_at: float = field(default_factory=time.perf_counter)  # made as it is queued: time to first token counts from here

    def cancel(self) -> None:
        self._cancel.set()

    def stopped(self) -> bool:
        return self._cancel.is_set() or bool(self.should_stop and self.should_stop())


class Decoder:
    """The rows being decoded together, with their KV cache. Rows can join between steps (their
    prompts are prefilled, then their cache is left-padded to the common length and stacked with the
    others': continuous batching) and leave as soon as they end. Each row keeps its own position ids,
    seed, temperature, token limit and cancel check."""

    def __init__(self, model, tokenizer, device: str = "cpu", background: bool = False):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        config = model.config
        self.limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 2048)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos = _eos_ids(tokenizer, model)
        self.rows: list[Request] = []
        self.gens: list[torch.Generator] = []
        self.started: list[float] = []
        self.cache = None
        self.mask = self.pos = self.last = None  # [rows, cache length], [rows], [rows]
        self.background = background
        kind = metrics.priority(background)  # the metrics' children, looked up once
        self._tokens = metrics.GENERATED_TOKENS.labels(priority=kind)
        self._ttft = metrics.FIRST_TOKEN_LATENCY.labels(priority=kind)
        self._tpot = metrics.OUTPUT_TOKEN_LATENCY.labels(priority=kind)
        _register(_DECODERS, self)

    @torch.inference_mode()
    def add(self, requests: list[Request]) -> None:
        """Prefill the prompts of `requests` and sample their first tokens; they join the batch."""
        for r in requests:
            if r.stopped():
                r.error = Cancelled()
                r.finished.set()
        requests = sorted((r for r in requests if not r.finished.is_set()), key=_adapter_key)
        if not requests:
            return
        ids = [self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"] for r in requests]
        ids = [x[-max(1, min(PROMPT_TOKENS, self.limit - r.max_new_tokens)):] or [self.pad]
               for x, r in zip(ids, requests)]
        for r, x in zip(requests, ids):
            r.seen = x
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[self.pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        with adapters.segments(_segments(requests)):
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                             use_cache=True, logits_to_keep=1)
        now = time.perf_counter()
        gens = [torch.Generator().manual_seed(r.seed) for r in requests]
        last = self._sample(requests, gens, out.logits[:, -1, :])
        for r in requests:
            self._ttft.observe(now - r.queued_at)
        pos = torch.tensor([len(x) for x in ids], device=self.device)
        if not self.rows:
            self.cache, self.mask, self.pos, self.last = out.cache, mask, pos, last
        else:
            length = max(self.mask.shape[1], mask.shape[1])
            for old, new in zip(self.cache.layers, out.cache.layers):
                old.keys = torch.cat([_pad_left(old.keys, length, 2), _pad_left(new.keys, length, 2)])
                old.values = torch.cat([_pad_left(old.values, length, 2), _pad_left(new.values, length, 2)])
            self.mask = torch.cat([_pad_left(self.mask, length, 1), _pad_left(mask, length, 1)])
            self.pos, self.last = torch.cat([self.pos, pos]), torch.cat([self.last, last])
        self.rows += requests
        self.gens += gens
        self.started += [now] * len(requests)
        order = sorted(range(len(self.rows)), key=lambda i: _adapter_key(self.rows[i]))  # rows of an adapter together
        if order != list(range(len(self.rows))):
            self._keep(order)
        self._drop_finished()

    @torch.inference_mode()
    def step(self) -> None:
        """One new token for every row; rows that end leave the batch."""
        for r in self.rows:
            if r.stopped() and not r.finished.is_set():
                r.error = Cancelled()
                r.finished.set()
        self._drop_finished()
        if not self.rows:
            return
        mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.device)], 1)
        with adapters.segments(_segments(self.rows)):
            out = self.model(input_ids=self.last[:, None], attention_mask=mask, position_ids=self.pos[:, None],
                             cache=self.cache, use_cache=True, logits_to_keep=1)
        self.cache, self.mask, self.pos = out.cache, mask, self.pos + 1
        self.last = self._sample(self.rows, self.gens, out.logits[:, -1, :])
        self._drop_finished()

    def _sample(self, rows: list[Request], gens: list[torch.Generator], logits: torch.Tensor) -> torch.Tensor:
        """The next token of each row (its own temperature, top-k and seed), vectorised over the rows;
        ends rows at end-of-text or their limit."""
        logits = logits.float().cpu()
        seen = [(i, t) for i, r in enumerate(rows) for t in set(r.tokens)]
        if seen and REPETITION_PENALTY != 1.0:
            index = tuple(torch.tensor(x) for x in zip(*seen))
            vals = logits[index]
            logits[index] = torch.where(vals > 0, vals / REPETITION_PENALTY, vals * REPETITION_PENALTY)
        tokens = logits.argmax(-1).tolist()  # greedy rows
        sampled = [i for i, r in enumerate(rows) if r.temperature > 0]
        if sampled:
            temps = torch.tensor([rows[i].temperature for i in sampled])[:, None]
            k = max((rows[i].top_k or logits.shape[-1]) for i in sampled)
            vals, ids = torch.topk(logits[sampled] / temps, min(k, logits.shape[-1]))
            for j, i in enumerate(sampled):
                kept = min(rows[i].top_k or vals.shape[-1], vals.shape[-1])
                probs = torch.softmax(vals[j, :kept], -1)
                tokens[i] = int(ids[j, int(torch.multinomial(probs, 1, generator=gens[i]))])
        appended = 0
        for r, token in zip(rows, tokens):
            if token in self.eos:
                r.finished.set()
            else:
                r.tokens.append(token)
                appended += 1
                if len(r.tokens) >= r.max_new_tokens:
                    r.finished.set()
        self._tokens.inc(appended)  # once a step, not a token
        return torch.tensor(tokens, device=self.device)

    def _drop_finished(self) -> None:
        now, n = time.perf_counter(), len(self.rows)
        for r, t0 in zip(self.rows, self.started):
            r.batch_size = max(r.batch_size, n)
            if r.finished.is_set():
                r.elapsed_s = now - t0
                self._observe_time_per_token(r)
        keep = [i for i, r in enumerate(self.rows) if not r.finished.is_set()]
        if len(keep) < n:
            self._keep(keep)

    def _observe_time_per_token(self, r: Request) -> None:
        """Time from its first token to its end over the tokens after the first; the end-of-text
        token that ended a row counts (its step was spent too). Cancelled requests are left out."""
        outputs = len(r.tokens) + (len(r.tokens) < r.max_new_tokens)
        if r.error is None and outputs > 1:
            self._tpot.observe(r.elapsed_s / (outputs - 1))

    def _keep(self, keep: list[int]) -> None:
        """Keep rows `keep`, in that order (with their cache)."""
        self.rows = [self.rows[i] for i in keep]
        self.gens = [self.gens[i] for i in keep]
        self.started = [self.started[i] for i in keep]
        if not keep:
            self.cache = self.mask = self.pos = self.last = None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index], layer.values[index]
        self.mask, self.pos, self.last = self.mask[index], self.pos[index], self.last[index]

    def fail(self, exc: BaseException) -> None:
        for r in self.rows:
            if not r.finished.is_set():
                r.error = exc
                r.finished.set()
        self.rows, self.gens, self.started = [], [], []
        self.cache = self.mask = self.pos = self.last = None


def _adapter_key(request: Request) -> int:
    return request.adapter.key if request.adapter else 0


def _segments(rows: list[Request]) -> list[tuple[int, int, int]]:
    """(adapter key, start, stop) for each run of rows with the same adapter (rows are grouped)."""
    runs: list[list[int]] = []
    for i, r in enumerate(rows):
        if r.adapter is None:
            continue
        if runs and runs[-1][0] == r.adapter.key and runs[-1][2] == i:
            runs[-1][2] = i + 1
        else:
            runs.append([r.adapter.key, i, i + 1])
    return [(key, start, stop) for key, start, stop in runs]


def _pad_left(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)


def decode(model, tokenizer, requests: list[Request], device: str = "cpu",
           before_step: Callable[[], None] | None = None) -> None:
    """Decode `requests` as one batch to the end; each ends at end-of-text, its own limit, or its
    cancel (its `error` is then Cancelled). `before_step` runs before each step (a background batch
    waits there for interactive work to end)."""
    decoder = Decoder(model, tokenizer, device)
    try:
        decoder.add(requests)
        while decoder.rows:
            if before_step:
                before_step()
            decoder.step()
    except BaseException as exc:
        decoder.fail(exc)
        raise


# The live batchers and decoders: the queue-depth and batch-size gauges are read from them at each
# scrape, so they cost nothing per step and a decoder dropped with rows in it stops counting.
_BATCHERS: weakref.WeakSet[Batcher] = weakref.WeakSet()
_DECODERS: weakref.WeakSet[Decoder] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()  # a scrape reads the sets while a model load or an impact run adds to them


def _register(live: weakref.WeakSet, obj) -> None:
    with _LIVE_LOCK:
        live.add(obj)


def _live(live: weakref.WeakSet) -> list:
    with _LIVE_LOCK:
        return list(live)


def queued(background: bool) -> int:
    """Requests waiting in the batchers' queues of that priority."""
    return sum(b._queues[background].qsize() for b in _live(_BATCHERS))


def decoding(background: bool) -> int:
    """Requests in the batches of that priority."""
    return sum(len(d.rows) for d in _live(_DECODERS) if d.background == background)


for _background in (False, True):
    _kind = metrics.priority(_background)
    metrics.QUEUE_DEPTH.labels(priority=_kind).set_function(functools.partial(queued, _background))
    metrics.BATCH_SIZE.labels(priority=_kind).set_function(functools.partial(decoding, _background))

# A worker that decodes itself uses one torch thread: OpenMP teams started from threads other than
# the process's main thread synchronise slowly. Measured on our 2 cores (SmolLM2-135M, bf16): a step
# of 16 rows took 96 ms with 1 thread and 156 ms with 2 in a worker thread, 82 ms with 2 in the main
# thread. So `python -m app` runs the Engine on its main thread and the workers hand it their steps.
WORKER_THREADS = 1


class Engine:
    """Runs the batchers' decoding steps (prefill, one token for every row) on the thread that
    calls `serve`, with the threads it is given, one step at a time. Without a serving engine a
    worker runs its steps itself (tests, and any process that does not call serve)."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._serving = False

    def call(self, fn: Callable, *args):
        if not self._serving:
            return fn(*args)
        done, box = threading.Event(), {}
        self._work.put((fn, args, box, done))
        done.wait()
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def serve(self, stop: threading.Event, threads: int) -> None:
        """Run handed-in steps with `threads` torch threads until `stop` is set (then the workers
        run their own again)."""
        torch.set_num_threads(threads)
        self._serving = True
        try:
            while not stop.is_set():
                try:
                    item = self._work.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._run(*item)
        finally:
            self._serving = False
            while True:  # steps handed in meanwhile
                try:
                    self._run(*self._work.get_nowait())
                except queue.Empty:
                    break

    @staticmethod
    def _run(fn, args, box, done) -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # the caller raises it
            box["error"] = exc
        finally:
            done.set()


ENGINE = Engine()


@atexit.register
def _close_batchers() -> None:
    for batcher in _live(_BATCHERS):
        batcher.close()


class Batcher:
    """Dynamic batching for one model, interactive requests first (see the module's docstring)."""

    def __init__(self, model, tokenizer, device: str = "cpu", max_batch: int = MAX_BATCH, name: str = "model"):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_batch = max_batch
        self._queues: dict[bool, queue.Queue[Request]] = {False: queue.Queue(), True: queue.Queue()}
        self._interactive = 0  # interactive requests queued or being decoded
        self._idle = threading.Condition()
        self._closing = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(background,), daemon=True,
                                          name=f"batcher-{name}{'-background' if background else ''}")
                         for background in (False, True)]
        for t in self._threads:
            t.start()
        _register(_BATCHERS, self)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what is being decoded and stop the workers (at exit: a thread killed inside a torch
        call aborts the interpreter)."""
        self._closing.set()
        for q in self._queues.values():
            q.put(None)  # wakes an idle worker
        for t in self._threads:
            t.join(timeout)

    def submit(self, request: Request) -> Request:
        if not request.background:
            with self._idle:
                self._interactive += 1
        self._queues[request.background].put(request)
        return request

    def decode_in_order(self, requests: list[Request]) -> None:
        """Decode `requests` to the end on a decoder of their own, as interactive work: they join it
        in the order given whenever a row ends. Continuous batching on a schedule fixed by the
        requests alone, so the same requests give the same tokens run after run, whatever else is
        being decoded meanwhile (a shared batch changes a greedy answer: its rows share activation
        scales and padding). The steps run on the engine between the workers' own."""
        decoder = Decoder(self.model, self.tokenizer, self.device)
        pending = list(requests)
        with self._idle:
            self._interactive += 1
        try:
            while pending or decoder.rows:
                room = self.max_batch - len(decoder.rows)
                if pending and room > 0:
                    ENGINE.call(decoder.add, pending[:room])
                    pending = pending[room:]
                else:
                    ENGINE.call(decoder.step)
        except BaseException as exc:
            decoder.fail(exc)
            for r in pending:
                r.error = exc
                r.finished.set()
            raise
        finally:
            with self._idle:
                self._interactive -= 1
                self._idle.notify_all()

    def yield_to_interactive(self, timeout: float = YIELD_MAX_S) -> None:
        """Background work calls this between steps: wait (bounded) while users are being served."""
        with self._idle:
            self._idle.wait_for(lambda: self._interactive == 0, timeout=timeout)

    def _take(self, q: queue.Queue[Request], block: bool, room: int) -> list[Request]:
        """Requests to add: when idle, wait for one and then BATCH_WINDOW_S for others to come with
        it; while decoding, whatever is queued now (they join between two steps)."""
        batch: list[Request] = []
        if block:
            batch.append(q.get())
        deadline = time.monotonic() + (BATCH_WINDOW_S if block else 0.0)
        while len(batch) < room:
            try:
                batch.append(q.get(timeout=max(0.0, deadline - time.monotonic())) if block else q.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self, background: bool) -> None:
        torch.set_num_threads(WORKER_THREADS)  # per calling thread
        q = self._queues[background]
        decoder = Decoder(self.model, self.tokenizer, self.device, background)
        live: list[Request] = []
        while not self._closing.is_set():
            try:
                room = self.max_batch - len(decoder.rows)
                if background:  # small prefills: a long one cannot yield to users while it runs
                    room = min(room, BACKGROUND_PREFILL)
                batch = [r for r in self._take(q, block=not decoder.rows, room=room) if r is not None]
                if self._closing.is_set():
                    live += batch
                    break
                if background:  # before any forward pass of its own, users first
                    self.yield_to_interactive()
                live += batch
                if batch:
                    ENGINE.call(decoder.add, batch)
                elif decoder.rows:
                    ENGINE.call(decoder.step)
            except BaseException as exc:  # one bad batch must not stop the worker
                log.exception("generation failed", extra={"batch": len(live)})
                decoder.fail(exc)
                for r in live:
                    if not r.finished.is_set():
                        r.error = exc
                        r.finished.set()
            finally:
                ended = [r for r in live if r.finished.is_set()]
                if ended:
                    live = [r for r in live if not r.finished.is_set()]
                    if not background:
                        with self._idle:
                            self._interactive -= len(ended)
                            self._idle.notify_all()
        decoder.fail(Cancelled())
        for r in live:
            if not r.finished.is_set():
                r.error = Cancelled()
                r.finished.set()


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
