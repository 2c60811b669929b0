"""Serving on OpenVINO GenAI: the model's int8 export, continuous batching, a run's LoRA at run time.

* The export: optimum-intel's exporter with NNCF's int8 weight compression turns a model folder
  (the bf16 safetensors that training also reads) into an OpenVINO IR in its ``openvino/``
  subfolder. The exporter needs another transformers than the app, so it runs in a Python of its
  own (OPENVINO_EXPORTER; the image's build stage has one): `python -m app build-models` calls it.
* ``OpenVINOWorker``: one ContinuousBatchingPipeline per served model, the engine's own scheduler.
  Requests join the running batch at the next step and leave when they end; each keeps its seed,
  temperature, top-k and token limit, and a cancel drops it from the batch at the next step. The
  pipeline decodes inside its `generate` call, which releases Python's lock (see `_serve_once`).
* A trained run is served by a second pipeline on the same export with the run's peft adapter file
  applied at run time (no merge, no re-export): base and trained decode side by side.
* Reproducible answers: with one inference thread, whole prompts prefilled at once and an f32 KV
  cache, a greedy request's tokens do not depend on what else is in the batch, and a seeded one's
  do not depend on what came before it. Measured on SmolLM2's export, 12 prompts greedy and seeded,
  alone against batches of 3-24, on a host with AVX-512 (u8 KV cache): 67 of 67 alike; with
  prompts prefilled in 256-token chunks 62 of 67; with 2 threads 8 of 16 greedy (33 of 67 even in
  f32). Each pipeline therefore decodes on one thread; base and trained decode on two at once. On
  a host without AVX-512, 12 prompts alone against one batch of all 12, twice: greedy 16 of 24
  alike with the CPU's default u8 KV cache, 24 of 24 with f16 or f32; sampled at 0.8, 2 of 24 with
  f16 and 21 of 24 with f32 (f32 was not slower). There a sampled answer can still change in a batch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.generation import MAX_BATCH, REPETITION_PENALTY, Cancelled, Request, Worker, eos_ids, prompt_ids

log = logging.getLogger(__name__)

EXPORT_DIR = "openvino"  # inside the model's folder
EXPORT_WEIGHTS = "int8"
THREADS = 1  # per pipeline: see the module's docstring
KV_CACHE_PRECISION = "f32"  # not the CPU's u8: see the module's docstring
BATCHED_TOKENS = 8192  # prompt tokens one step may prefill: whole prompts only, never split
ENGINE_NAME = "openvino"
KEEP_ALIVE_TOKENS = 4096  # the keep-alive request's limit: it ends sooner, once no request is left


def export_folder(model_folder: Path) -> Path:
    return Path(model_folder) / EXPORT_DIR


def has_export(model_folder: Path) -> bool:
    return (export_folder(model_folder) / "openvino_model.xml").is_file()


def export(model_folder: Path, exporter: str) -> Path:
    """Export `model_folder` to OpenVINO IR with int8 weights, with the exporter Python `exporter`
    (one with optimum-intel and NNCF). Written to a temporary folder, then renamed."""
    dest = export_folder(model_folder)
    tmp = dest.with_name(f".{EXPORT_DIR}-tmp")
    cmd = [exporter, "-m", "optimum.commands.optimum_cli", "export", "openvino", "--model", str(model_folder),
           "--task", "text-generation-with-past", "--weight-format", EXPORT_WEIGHTS, str(tmp)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise RuntimeError(f"the OpenVINO export of {model_folder} failed (OPENVINO_EXPORTER={exporter}, "
                           f"exit {done.returncode})")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    log.info("exported model", extra={"model": str(model_folder), "seconds": round(time.perf_counter() - started, 1),
                                      "weights": EXPORT_WEIGHTS})
    return dest


def lora_scale(adapter_folder: Path) -> float | None:
    """peft's scaling of the adapter's update (lora_alpha / r, or / sqrt(r) with rsLoRA), which the
    engine takes as the adapter's alpha; None when one scale does not fit (per-layer ranks or alphas)."""
    config = json.loads((Path(adapter_folder) / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_dora"):
        return None
    r, alpha = config["r"], config.get("lora_alpha", config["r"])
    return alpha / (r ** 0.5 if config.get("use_rslora") else r)


class OpenVINOWorker(Worker):
    """One model served by an OpenVINO GenAI ContinuousBatchingPipeline (see the module's docstring)."""

    def __init__(self, model_folder: Path, tokenizer, generation_config, *, adapter: Path | None = None,
                 name: str = "model") -> None:
        import openvino as ov
        import openvino_genai as og

        self._og, self._ov = og, ov
        self.tokenizer = tokenizer
        self.eos = eos_ids(tokenizer, generation_config)
        config = json.loads((export_folder(model_folder) / "config.json").read_text(encoding="utf-8"))
        self.window = config.get("max_position_embeddings") or config.get("n_positions") or 2048
        scheduler = og.SchedulerConfig()
        scheduler.dynamic_split_fuse = False
        scheduler.max_num_batched_tokens = BATCHED_TOKENS
        scheduler.max_num_seqs = MAX_BATCH
        # unpinned: pinned, base and trained shared one core (two 128-token answers at once 2.6-2.9 s
        # pinned, 1.8 s unpinned, 1.3-1.8 s for one alone)
        properties: dict = {"INFERENCE_NUM_THREADS": THREADS, "ENABLE_CPU_PINNING": False,
                            "KV_CACHE_PRECISION": KV_CACHE_PRECISION}
        if adapter is not None:
            # static: the adapter's weights are constants of the compiled model (a pipeline serves one
            # run): 64 greedy tokens in 2.25 s against the base's 2.12 s, the default (dynamic) mode
            # 3.32 s, with the same answers; fusing into the weights needs unquantised ones.
            properties["adapters"] = og.AdapterConfig(og.Adapter(str(Path(adapter) / "adapter_model.safetensors")),
                                                      lora_scale(adapter), og.AdapterConfig.Mode.MODE_STATIC)
        self.pipe = og.ContinuousBatchingPipeline(str(export_folder(model_folder)), scheduler, "CPU", properties)
        self._lock = threading.Lock()
        self._pending: list[Request] = []  # taken, to be added at the next tick
        self._ticker = _ticker(og, self._tick)
        self._handles: dict[int, object] = {}  # id(request) -> its handle in the pipeline
        self._lead: Request | None = None  # a lone request served as generate's own (_serve_solo)
        self._next_id = 0
        super().__init__(name)

    def _tensor(self, ids: list[int]):
        import numpy as np
        return self._ov.Tensor(np.array([ids], dtype=np.int64))

    def _config(self, r: Request):
        c = self._og.GenerationConfig()
        c.max_new_tokens = r.max_new_tokens
        c.repetition_penalty = REPETITION_PENALTY
        c.stop_token_ids = self.eos
        c.rng_seed = r.seed
        if r.temperature > 0:
            c.do_sample, c.temperature, c.top_k = True, r.temperature, r.top_k or 0
        return c

    def _serve_once(self) -> None:
        """Decode until no request is left. The pipeline's `generate` steps without holding Python's
        lock (its `step` holds it, which serialised base and trained and stalled the HTTP threads),
        and requests added from its streamer callback (`_tick`), between steps, join its batch. A
        lone request is `generate`'s own (`_serve_solo`); several run on a keep-alive request of
        the worker's, whose callback admits, reads and cancels them until none is left."""
        first = self._take(room=MAX_BATCH, block=True)
        with self._lock:
            self._pending += first
            if not self._pending:
                return
            lead = self._pending.pop() if len(self._pending) == 1 else None
        self._drain()
        if lead is not None:
            self._serve_solo(lead)
        else:
            keep_alive = self._og.GenerationConfig()
            keep_alive.max_new_tokens, keep_alive.ignore_eos = KEEP_ALIVE_TOKENS, True
            self.pipe.generate([self._tensor([0])], [keep_alive], self._ticker)
        self._drain()

    def _serve_solo(self, lead: Request) -> None:
        """`lead` as `generate`'s own request: a keep-alive beside it cost 15-30 % of a lone answer's
        time. Its tokens come to its streamer, whose calls admit, read and cancel the requests that
        join it. Those it admitted in the meantime may outlast it: then `pump` reads and cancels
        them until `generate` ends (nothing is admitted then: only a callback knows that `generate`
        goes on), and a request that comes waits for that."""
        lead.seen = prompt_ids(self.tokenizer, lead, self.window)
        with self._lock:
            self._lead = lead
            self.live.append(lead)
        ended = threading.Event()

        def pump() -> None:
            while not ended.wait(0.01):
                if lead.finished.is_set():
                    self._tick(admit=False)
        reader = threading.Thread(target=pump, name="generation-pump", daemon=True)
        reader.start()
        try:
            self.pipe.generate([self._tensor(lead.seen)], [self._config(lead)], _streamer(self._og, self._lead_tokens))
        finally:  # on an error the lead stays live, and `_fail` ends it with the others
            ended.set()
            reader.join()
            with self._lock:
                self._lead = None
        with self._lock:
            if lead in self.live:  # it ended before its limit without end-of-text, or was stopped
                self.live.remove(lead)
                self._finish(lead, Cancelled() if lead.stopped() or self._closing else None)

    def _lead_tokens(self, tokens: list[int]) -> object:
        """The lead's new tokens (its streamer's call, between two steps): it ends at end-of-text or
        its limit; then the others' tick. STOP ends `generate` when the lead is stopped."""
        lead = self._lead
        with self._lock:
            if lead in self.live:
                kept = [t for t in tokens if t not in self.eos]
                lead.ended_eos |= len(kept) < len(tokens)
                self._tokens_added(lead, kept)
                if lead.ended_eos or len(lead.tokens) >= lead.max_new_tokens:
                    self.live.remove(lead)
                    self._finish(lead)
        self._tick()
        stopped = lead.stopped() or self._closing
        return self._og.StreamingStatus.STOP if stopped and not lead.finished.is_set() else self._og.StreamingStatus.RUNNING

    def _drain(self) -> None:
        """Read and step what is left in the pipeline (as a generate call ended, or after a failed
        one): generate may only start on an idle pipeline. It admits no request: one stepped here,
        after `generate` ended (which clears the KV cache), sampled other tokens for its seed than
        one admitted within it, on a host without AVX-512, so a request that comes now waits for the
        next `generate`."""
        self._tick(admit=False)
        while self.pipe.has_non_finished_requests():
            self.pipe.step()
            self._tick(admit=False)

    def _tick(self, admit: bool = True) -> object:
        """Between two steps: admit queued requests (unless not `admit`), cancel stopped ones, read
        new tokens. Whether the keep-alive request goes on (while any request is being decoded or waits)."""
        with self._lock:
            pending, self._pending = (self._pending, []) if admit else ([], self._pending)
            if admit:
                pending += self._take(room=MAX_BATCH - len(self.live) - len(pending), block=False)
            for r in pending:
                r.seen = prompt_ids(self.tokenizer, r, self.window)
                self._next_id += 1
                self._handles[id(r)] = self.pipe.add_request(self._next_id, self._tensor(r.seen), self._config(r))
                self.live.append(r)
            size = len(self.live)
            for r in list(self.live):
                r.batch_size = max(r.batch_size, size)
                if r is self._lead:
                    continue  # its tokens come to its own streamer
                if r.stopped() or self._closing:
                    self._handles[id(r)].cancel()
                self._read(r)
            going = self.live and not self._closing
        return self._og.StreamingStatus.RUNNING if going else self._og.StreamingStatus.STOP

    def _read(self, r: Request) -> None:
        """New tokens of `r`; ends it when the pipeline has."""
        handle = self._handles[id(r)]
        while handle.can_read():
            for out in handle.read().values():
                tokens = [t for t in out.generated_ids if t not in self.eos]
                r.ended_eos |= len(tokens) < len(out.generated_ids)
                self._tokens_added(r, tokens)
        status = handle.get_status()
        if status == self._og.GenerationStatus.RUNNING:
            return
        self.live.remove(r)
        del self._handles[id(r)]
        stopped = status != self._og.GenerationStatus.FINISHED or r.stopped()
        self._finish(r, Cancelled() if stopped else None)

    def _release(self) -> None:
        self.pipe = None  # the compiled model and its KV cache

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for r in pending:
            self._finish(r, exc)
        for r in self.live:
            handle = self._handles.pop(id(r), None)
            if handle is not None:
                handle.cancel()
        super()._fail(exc)


def _streamer(og, write: Callable[[list[int]], object]):
    """A streamer that gives `write` each new token (or tokens) of generate's own request as a list."""
    class Streamer(og.StreamerBase):
        def write(self, token) -> object:
            return write(list(token) if isinstance(token, list | tuple) else [token])

        def end(self) -> None:
            pass
    return Streamer()


def _ticker(og, tick: Callable[[], object]):
    """A streamer for the keep-alive request that calls `tick` at each of its tokens (no text
    decoding, which a callback streamer would do for every token)."""
    class Ticker(og.StreamerBase):
        def write(self, token) -> object:
            return tick()

        def end(self) -> None:
            pass
    return Ticker()
