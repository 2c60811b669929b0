"""Training presets and the background training job (SL-CAI data, then supervised fine-tuning).

One job at a time. States: queued -> running -> succeeded | failed | cancelled (cancelling while a
cancel is being honoured, within one generated token or one optimizer step).

The SL-CAI data: each red-team training prompt is answered, critiqued and revised by the base model
(app/cai.py); the independent judge scores answer and revision, and a revision it judges worse than
its answer is dropped. Fine-tuning: LoRA adapters (peft) on all linear projections of a copy of the
base model, loss on the response tokens only (the prompt in the model's chat template). The run
folder holds the adapter, not a copy of the base; loading the run applies it to the base it names.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import math
import re
import secrets
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from app import cai, constitution, metrics, recipe
from app.errors import ApiError
from app.generation import SYSTEM_PROMPT, chat_prompt, has_chat_template
from app.models import Cancelled, LoadedModel, apply_adapter
from app.runs import RunStore, new_run_id, now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    epochs: int
    prompts: int
    rounds: int
    max_new_tokens: int
    batch_size: int
    learning_rate: float
    max_length: int
    revision_samples: int = 1
    helpful_prompts: int = 0  # helpful training prompts whose base answers are targets too (app/recipe.py)
    lora_rank: int = 16
    lora_alpha: int = 32


PRESETS: dict[str, Preset] = {
    name: Preset(name=name, **values)
    for name, values in tomllib.loads((Path(__file__).parent / "data" / "presets.toml").read_text()).items()
}
FINAL_STATES = {"succeeded", "failed", "cancelled"}
JOB_ID_BYTES = 6
JOB_ID = re.compile(rf"j-[0-9a-f]{{{2 * JOB_ID_BYTES}}}")


def sft_batch(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> dict[str, torch.Tensor]:
    """Prompt + response examples, loss on response tokens only, padding masked out. The prompt is
    what generation sends the model (chat template and system prompt), so training and use agree."""
    rows = []
    chat = has_chat_template(tokenizer)
    for prompt, response in pairs:
        prefix = tokenizer(chat_prompt(tokenizer, [{"role": "user", "content": prompt}], SYSTEM_PROMPT),
                           add_special_tokens=False)["input_ids"]
        reply = tokenizer(response if chat else " " + response, add_special_tokens=False)["input_ids"]
        reply = (reply + [tokenizer.eos_token_id])[: max_length // 2]
        prefix = prefix[-(max_length - len(reply)):]  # too long: keep the end of the prompt, never drop the reply
        ids = prefix + reply
        labels = [-100] * len(prefix) + reply
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


@dataclass
class Job:
    job_id: str
    run_id: str
    preset: str
    model: str
    seed: int
    state: str = "queued"
    phase: str = "queued"
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    losses: list = field(default_factory=list)
    trace: list = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    checkpoint: str | None = None  # relative to CHECKPOINT_DIR: runs/<run_id>/trained
    checkpoint_path: str | None = None  # absolute, as POST /api/models/load takes it
    error: str | None = None
    metrics: dict = field(default_factory=dict)
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def snapshot(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in {"cancel_event", "started"}}
        elapsed = time.monotonic() - self.started
        data["elapsed_s"] = round(elapsed, 2)
        data["progress"] = round(self.step / self.total_steps, 4) if self.total_steps else 0.0
        remaining = self.total_steps - self.step
        data["eta_s"] = (round(elapsed / self.step * remaining, 1) if self.step and self.state == "running" else None)
        data["trace"] = list(self.trace)
        data["losses"] = list(self.losses)
        return data


HEARTBEAT_S = 1.0  # a cancel asked on another replica reaches the job within about this


class StoredJob:
    """A job another replica runs, as the shared store has it (its last heartbeat)."""

    def __init__(self, data: dict):
        self.data, self.job_id, self.state = data, data["job_id"], data["state"]

    def snapshot(self) -> dict:
        return dict(self.data)


class Trainer:
    """Runs one training job at a time in a background thread."""

    def __init__(self, store: RunStore, threads: int = 1):
        self.store = store
        self.threads = threads  # torch threads of the fine-tuning thread
        self._lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.active: Job | None = None
        self.last: Job | None = None
        self.on_success = None  # callback(job, trained: LoadedModel), set by the service

    def start(self, base: LoadedModel, preset_name: str, seed: int) -> Job:
        preset = PRESETS[preset_name]
        with self._lock:
            if self.active is not None:
                raise ApiError(409, "preset", f"training job {self.active.job_id} is {self.active.state}; "
                               "one job at a time", error="busy", extra={"job_id": self.active.job_id})
            self.store.claim()  # and across replicas, when they share the store
            job = Job(job_id="j-" + secrets.token_hex(JOB_ID_BYTES), run_id=new_run_id(preset.name), preset=preset.name,
                      model=base.name, seed=seed)
            # generation steps (answer, then critique and revisions per round, per prompt), then optimizer steps
            examples = preset.prompts + preset.helpful_prompts
            job.total_steps = (preset.prompts * (1 + (1 + cai.REVISION_STYLES) * preset.rounds)
                               + preset.helpful_prompts + preset.epochs * math.ceil(examples / preset.batch_size))
            try:
                self.store.create(job.run_id, preset=preset.name, model=base.name, seed=seed, job_id=job.job_id,
                                  preset_config=asdict(preset))
                self._publish(job)
            except BaseException:
                self.store.release()
                raise
            self.jobs[job.job_id] = job
            self.active = job
            metrics.set_training_state("queued")
        threading.Thread(target=self._run, args=(job, base, preset), name=f"train-{job.job_id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            # an id not of our making never reaches the database (Postgres refuses a NUL, say)
            stored = self.store.find_job(job_id) if JOB_ID.fullmatch(job_id) else None
            if stored is None:
                raise ApiError(404, "job_id", f"no training job {job_id!r}", error="not_found")
            return StoredJob(stored)
        return job

    def fleet_active(self) -> Job | StoredJob | None:
        """The active job: this replica's, or one another replica sharing the store runs."""
        if self.active is not None:
            return self.active
        stored = self.store.active_job()
        return StoredJob(stored) if stored else None

    def fleet_last(self) -> Job | StoredJob | None:
        """The job started last: this replica's, or a later one of another replica sharing the store."""
        stored = self.store.last_job()
        if stored is None:
            return self.last
        return self.jobs.get(stored["job_id"]) or StoredJob(stored)  # ours: the live object is the fresher

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if isinstance(job, StoredJob):  # another replica's: it sees the request at its next heartbeat
            return StoredJob(self.store.request_cancel(job_id))
        with self._lock:
            if job.state in {"queued", "running"}:
                job.cancel_event.set()
                self.store.update(job.run_id, state="cancelling")
                job.state = "cancelling"
                metrics.set_training_state("cancelling")
        return job

    def _beat(self, job: Job, ended: threading.Event) -> None:
        """Publish the job to the replicas sharing the store, and take their cancel, every HEARTBEAT_S."""
        while not ended.wait(HEARTBEAT_S):
            try:
                if self.store.heartbeat(job.run_id, job.snapshot()) and not job.cancel_event.is_set():
                    self.cancel(job.job_id)
            except ApiError as exc:  # the database is away: the job goes on, its lease may lapse
                log.warning("training heartbeat failed", extra={"job_id": job.job_id, "error": exc.message})

    def _run(self, job: Job, base: LoadedModel, preset: Preset) -> None:
        ended = threading.Event()
        if self.store.shared:
            threading.Thread(target=self._beat, args=(job, ended), name=f"beat-{job.job_id}", daemon=True).start()
        try:
            self._work(job, base, preset)
        finally:
            ended.set()

    def _work(self, job: Job, base: LoadedModel, preset: Preset) -> None:
        stop = job.cancel_event.is_set
        t0 = time.perf_counter()
        try:
            with self._lock:  # a cancel that came first keeps its "cancelling"
                if job.state == "queued":
                    self.store.update(job.run_id, state="running")
                    job.state = "running"
                    metrics.set_training_state("running")
                job.phase = "generating"
            items = constitution.training_prompts(preset.prompts)

            def advance(n: int) -> None:
                job.step += n

            # SL-CAI data from the base model itself (batched over the prompts), judged independently.
            traces = cai.run_many(base, [p["prompt"] for p in items], principles=[p["principle"] for p in items],
                                  rounds=preset.rounds, seed=job.seed, max_new_tokens=preset.max_new_tokens,
                                  revision_samples=preset.revision_samples, should_stop=stop, on_step=advance,
                                  background=True, prefer_refusal=True, references=[p.get("decline") for p in items])
            job.trace.extend(traces)
            verdicts = [t["judge"]["verdict"] for t in traces]
            helpful = [p["prompt"] for p in constitution.helpful_training_prompts(preset.helpful_prompts)]
            helpful_answers = cai.answers(base, helpful, seed=job.seed, max_new_tokens=preset.max_new_tokens,
                                          should_stop=stop, on_step=advance, background=True)
            red_pairs, red_counts = recipe.red_team_targets(traces)
            helpful_pairs, helpful_counts = recipe.helpful_targets(helpful, helpful_answers)
            pairs = red_pairs + helpful_pairs
            if not pairs:  # nothing passed the filters: train on the revisions rather than on nothing
                pairs = [(t["prompt"], t["final"]) for t in traces]
            job.total_steps = job.step + preset.epochs * math.ceil(len(pairs) / preset.batch_size)
            t_gen = time.perf_counter() - t0
            job.phase = "training"
            student, loss_per_epoch = self._fine_tune(job, base, pairs, preset, stop)
            t_train = time.perf_counter() - t0 - t_gen
            job.phase = "saving"
            folder = self.store.save_adapter(job.run_id, "trained", student, base_model=base.name)
            job.checkpoint = str(folder.relative_to(self.store.root.parent))
            job.checkpoint_path = str(folder.resolve())
            del student
            trained = apply_adapter(base, folder)  # served from what was saved, exactly as a later load
            job.metrics = {"generation_s": round(t_gen, 2), "training_s": round(t_train, 2),
                           "total_s": round(time.perf_counter() - t0, 2), "loss_per_epoch": loss_per_epoch,
                           "examples": len(pairs), "revisions": len(traces),
                           "revisions_better": verdicts.count("better"), "revisions_same": verdicts.count("same"),
                           "revisions_worse": verdicts.count("worse"),
                           "revisions_flagged": sum(bool(t["judge"]["revision_flagged"]) for t in traces),
                           "revisions_dropped": len(traces) - len(red_pairs), **red_counts, **helpful_counts,
                           "method": f"LoRA r={preset.lora_rank} alpha={preset.lora_alpha} on all linear layers"}
            self.store.write_file(job.run_id, "traces.json", json.dumps(traces, indent=1))
            if self.on_success:  # served (and announced to the fleet) before any replica reports it succeeded
                self.on_success(job, trained)
            job.phase = "done"
            self.store.update(job.run_id, trained="trained", base_model=base.name, metrics=job.metrics,
                              finished_at=now(), state="succeeded", **self._whole(job))
            self._finish(job, "succeeded")
        except Cancelled:
            self.store.update(job.run_id, finished_at=now(), error="cancelled by request")
            self._finish(job, "cancelled", error="cancelled by request")
        except OSError as exc:
            message = ("no space left on the checkpoint volume" if exc.errno == errno.ENOSPC
                       else f"could not write the checkpoint: {exc.strerror or exc}")
            self._fail(job, message)
        except Exception as exc:  # the job fails, the server stays up
            if "No space left" in str(exc):  # safetensors reports ENOSPC as its own error type
                self._fail(job, "no space left on the checkpoint volume")
                return
            log.exception("training job failed", extra={"job_id": job.job_id})
            self._fail(job, f"{type(exc).__name__}: {exc}")

    def _fail(self, job: Job, message: str) -> None:
        try:
            self.store.update(job.run_id, finished_at=now(), error=message, state="failed")
        except OSError:
            log.error("could not record the failed run", extra={"run_id": job.run_id})
        self._finish(job, "failed", error=message)

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        with self._lock:
            self.store.release()  # the fleet's job lock first: whoever sees the job end may start the next
            job.state, job.phase, job.error = state, "done", error
            if state != "failed":  # the record next: a client that sees the job end reads the record next
                try:
                    self.store.update(job.run_id, state=state, **self._whole(job))
                except OSError:
                    pass
            self._publish(job)
            metrics.set_training_state(state)
            metrics.TRAINING_RUNS.labels(state=state).inc()
            self.active, self.last = None, job
        log.info("training job ended", extra={"job_id": job.job_id, "run_id": job.run_id, "state": state,
                                              "error": error, "metrics": job.metrics})

    def _whole(self, job: Job) -> dict:
        """The job itself, for a write that ends it: a replica that reads the final state reads the
        job's metrics and trace in the same row, never the last heartbeat's."""
        return {"job": job.snapshot()} if self.store.shared else {}

    def _publish(self, job: Job) -> None:
        """The job as it is now, to the replicas sharing the store (their GET /api/train/{id})."""
        if self.store.shared:
            try:
                self.store.heartbeat(job.run_id, job.snapshot())
            except ApiError:
                pass

    def _fine_tune(self, job: Job, base: LoadedModel, pairs, preset: Preset, stop):
        """LoRA on a float32 copy of the base (the served base stays untouched). Returns the peft
        model and the mean loss of each epoch."""
        from peft import LoraConfig, get_peft_model

        torch.set_num_threads(self.threads)  # per thread; a new thread otherwise takes whatever was set last
        torch.manual_seed(job.seed)
        config = LoraConfig(r=preset.lora_rank, lora_alpha=preset.lora_alpha, lora_dropout=0.0,
                            target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(copy.deepcopy(base.model).float(), config)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=preset.learning_rate)
        gen = torch.Generator().manual_seed(job.seed)
        per_epoch = []
        try:
            for _epoch in range(preset.epochs):
                order = torch.randperm(len(pairs), generator=gen).tolist()
                epoch_losses = []
                for start in range(0, len(order), preset.batch_size):
                    base.worker.yield_to_interactive()  # users first: wait while they are served
                    if stop():
                        raise Cancelled()
                    batch = sft_batch(base.tokenizer, [pairs[i] for i in order[start:start + preset.batch_size]],
                                      preset.max_length)
                    loss = model(**{k: v.to(base.device) for k, v in batch.items()}).loss
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    job.step += 1
                    job.loss = round(loss.item(), 4)
                    job.losses.append([len(job.losses) + 1, job.loss])
                    epoch_losses.append(job.loss)
                per_epoch.append(round(sum(epoch_losses) / len(epoch_losses), 4))
        finally:
            model.eval()
        return model, per_epoch
