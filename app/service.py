"""The app's actions, shared by the JSON routes and the Gradio UI. Each takes its typed request
(app/schemas.py request_models, `Service.requests`), validated by whoever built it: FastAPI for a
route, the UI for a control. Model state, evaluation, generation, training jobs, runs, impact."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from app import evaluation, generation, impact, metrics, models
from app.config import Settings, build_id
from app.errors import ApiError
from app.models import LoadedModel
from app.runs import RunStore
from app.schemas import request_models
from app.training import PRESETS, Trainer

log = logging.getLogger(__name__)
metrics.declare(metrics.EVALUATIONS, "mode", evaluation.MODES)
metrics.declare(metrics.TRAINING_STARTED, "preset", PRESETS)


def _store(settings: Settings) -> RunStore:
    """The runs on the checkpoint volume, or in Postgres when DATABASE_URL is set."""
    if not settings.database_url:
        return RunStore(settings.checkpoint_dir)
    from app.pgstore import PostgresRunStore
    return PostgresRunStore(settings.checkpoint_dir, settings.database_url, settings.replica_id)


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.requests = request_models(settings)  # the request models, with this app's limits
        self.store = _store(settings)
        self.trainer = Trainer(self.store, settings.compute_threads)
        self.trainer.on_success = self._trained
        self.base: LoadedModel | None = None
        self.trained: LoadedModel | None = None
        self.trained_run: str | None = None
        self.model_state = "not_loaded"
        self.judge_state = "not_loaded"  # loaded on first use unless preloaded
        self.model_error: str | None = None
        self.loading_name: str | None = None
        self._load_lock = threading.Lock()
        self._follow_lock = threading.Lock()
        self.started = time.monotonic()
        self.build = build_id()

    # ---- lifecycle ----
    def open(self) -> None:
        interrupted = self.store.open()
        metrics.watch_volume(self.store.root)
        metrics.watch_store(self.store)
        if interrupted:
            log.warning("runs interrupted by an earlier stop", extra={"runs": interrupted})

    def preload(self) -> None:
        """Load the default model and the judge in the background; /health answers meanwhile. The
        judge counts as loading from the start: between the model's load and the judge's, /ready
        would otherwise say ready and then take it back."""
        self.judge_state = "loading"

        def work():
            try:
                self.load_model(self.requests.LoadModelRequest(model=self.settings.default_model))
            except Exception as exc:  # recorded in model_state/model_error, shown by /ready
                log.error("default model failed to load", extra={"model": self.settings.default_model,
                                                                 "error": getattr(exc, "message", str(exc))})
            try:
                evaluation.load_judge()
                self.judge_state = "ready"
            except Exception as exc:  # the judge is needed only for judge/both modes: say so, go on
                self.judge_state = "failed"
                log.error("judge model failed to load", extra={"error": str(exc)})
        threading.Thread(target=work, name="preload", daemon=True).start()

    # ---- models ----
    def health(self) -> dict:
        return {"status": "healthy", "version": __import__("app").__version__, "build": self.build,
                "uptime_s": round(time.monotonic() - self.started, 1),
                "model": self.base.name if self.base else None, "model_state": self.model_state,
                "judge_state": self.judge_state}

    def ready(self) -> tuple[bool, dict]:
        """Ready once the model is loaded and a preload of the judge has ended (a judge that failed
        to load leaves rules evaluation working: ready, and the state says so). Not ready while the
        runs' database (DATABASE_URL) does not answer."""
        problem = self.store.problem()
        if problem:
            return False, {"status": "database_unavailable", "error": problem, "judge": self.judge_state}
        if self.model_state == "ready" and self.judge_state != "loading":
            return True, {"status": "ready", "model": self.base.name, "judge": self.judge_state}
        status = self.model_state if self.model_state != "ready" else "loading"
        return False, {"status": status, "error": self.model_error, "judge": self.judge_state}

    def models(self) -> dict:
        self._follow_fleet()
        return {"registry": [{"name": s.name, "description": s.description} for s in models.REGISTRY.values()],
                "current": self.base.info() if self.base else None, "state": self.model_state,
                "trained_run": self.trained_run}

    def load_model(self, req, announce: bool = True) -> dict:
        """Load a registry model or a run's checkpoint; with `announce`, the replicas sharing the
        store follow (a load made to follow them does not announce)."""
        name = req.model.strip()
        if self.trainer.fleet_active() is not None:  # the fleet serves one model: one replica's job holds it
            raise ApiError(409, "model", "a training job is running; load another model after it ends", error="busy")
        with self._load_lock:
            self.model_state, self.loading_name, self.model_error = "loading", name, None
            try:
                lm = models.load(self.store.localize(name), self.settings)
            except ApiError as exc:
                self.model_state = "ready" if self.base else "failed"
                self.model_error = exc.message
                raise
            except Exception as exc:
                log.exception("model load failed", extra={"model": name})
                self.model_state = "ready" if self.base else "failed"
                self.model_error = f"{type(exc).__name__}: {exc}"
                raise ApiError(422, "model", f"could not load {name!r}: {self.model_error}") from None
            old = (self.base, self.trained)
            if lm.adapter:  # a training run: its base model, compared with the run's trained model
                self.base, self.trained, self.trained_run = lm.base, lm, Path(lm.adapter).parent.name
            else:
                self.base, self.trained, self.trained_run = lm, None, None
            self._retire(*old)
            self.model_state = "ready"
            if announce:
                self._announce(lm.adapter)
            metrics.set_model(self.base.name, lm.load_seconds)
            log.info("model loaded", extra={"model": lm.name, "parameters": lm.parameters, "adapter": lm.adapter,
                                            "load_seconds": round(lm.load_seconds, 3)})
            return {"model": self.base.name, "parameters": lm.parameters, "device": lm.device,
                    "dtype": lm.info()["dtype"], "load_seconds": round(lm.load_seconds, 3),
                    "trained_run": self.trained_run, "adapter": lm.adapter}

    def _require_model(self) -> LoadedModel:
        if self.base is None:
            raise ApiError(409, "model", f"no model is loaded (state: {self.model_state})", error="no_model")
        return self.base

    def _trained(self, job, student: LoadedModel) -> None:
        old = self.trained
        if self.base is not None and self.base.name == job.model:
            self.trained, self.trained_run = student, job.run_id
            self._announce(job.checkpoint_path)
        self._retire(old, student)

    def _announce(self, folder: str | None) -> None:
        """What this replica now serves, for the others sharing the store to follow."""
        try:
            self.store.set_serving(self.base.name, self.trained_run, folder)
        except ApiError as exc:  # the database is away: the others keep what they serve
            log.warning("could not record the served model", extra={"error": exc.message})

    def _follow_fleet(self) -> None:
        """Serve what the fleet serves: a model loaded, or a run trained, on another replica is
        loaded here before this request is answered (one database read a request)."""
        if not self.store.shared:
            return
        with self._follow_lock:
            try:
                wanted = self.store.serving()
            except ApiError as exc:  # the database is away: serve what this replica has
                log.warning("could not read the served model", extra={"error": exc.message})
                return
            if not wanted or self.base is None or self.trainer.active is not None:
                return
            if (wanted["model"], wanted["run_id"]) == (self.base.name, self.trained_run):
                return
            source = wanted["folder"] if wanted["run_id"] else wanted["model"]
            try:
                self.load_model(self.requests.LoadModelRequest(model=source), announce=False)
            except ApiError as exc:
                log.error("could not load what the fleet serves", extra={"model": source, "error": exc.message})

    def _retire(self, *models_: LoadedModel | None) -> None:
        """Free the workers (and the engine's pipelines) of models no longer served, once their
        requests are done."""
        for lm in models_:
            if lm is not None and lm is not self.base and lm is not self.trained and lm.worker is not None:
                lm.worker.retire()

    # ---- evaluation and generation ----
    def _seed(self, seed: int | None) -> int:
        return self.settings.seed if seed is None else seed

    def evaluate(self, req) -> dict:
        metrics.EVALUATIONS.labels(mode=req.mode).inc()
        return evaluation.evaluate(req.text, req.mode)

    def _submit_both(self, req) -> dict:
        """Queue the prompt on the base model and (when compare) the trained one: they decode side by
        side, each batched with other users' requests (app/generation.py)."""
        self._follow_fleet()
        base = self._require_model()
        models_ = {"base": base, "trained": self.trained if req.compare else None}
        metrics.GENERATIONS.inc()  # one a request, whether one model answers or two
        return {kind: (lm, lm.submit([{"role": "user", "content": req.prompt}], max_new_tokens=req.max_new_tokens,
                                     temperature=req.temperature, seed=self._seed(req.seed))) if lm else None
                for kind, lm in models_.items()}

    def generate(self, req) -> dict:
        jobs = self._submit_both(req)
        out = {"prompt": req.prompt, "base": self._answer(*jobs["base"]),
               "trained": self._answer(*jobs["trained"]) if jobs["trained"] else None,
               "run_id": self.trained_run if jobs["trained"] else None}
        return out

    def generate_stream(self, req):
        """Like generate, yielding {"base": text so far, "trained": ..., "done": bool} as tokens come;
        closing the generator (the UI's Stop) cancels both requests."""
        jobs = self._submit_both(req)
        kinds = [k for k in ("base", "trained") if jobs[k]]
        requests = [jobs[k][1] for k in kinds]
        try:
            for texts in generation.stream(jobs["base"][0].tokenizer, requests):
                yield {**dict(zip(kinds, texts)), "done": False}
            yield {"prompt": req.prompt, "done": True,
                   **{k: self._answer(*jobs[k]) for k in kinds}}
        finally:
            for r in requests:
                r.cancel()

    @staticmethod
    def _answer(lm: LoadedModel, request) -> dict:
        text = generation.wait(lm.tokenizer, request)
        return {"text": text, "evaluation": evaluation.evaluate(text or " ", "judge"),
                "elapsed_s": round(request.elapsed_s, 3), "tokens": len(request.tokens),
                "batch_size": request.batch_size}

    def critique(self, req) -> dict:
        """One SL-CAI trace on demand (answer, critique, revision, judged), no training."""
        from app import cai
        return cai.run(self._require_model(), req.prompt, rounds=req.rounds, seed=self._seed(req.seed),
                       max_new_tokens=req.max_new_tokens)

    # ---- training ----
    def start_training(self, req) -> dict:
        base = self._require_model()
        job = self.trainer.start(base, req.preset, self._seed(req.seed))
        metrics.TRAINING_STARTED.labels(preset=req.preset).inc()
        return job.snapshot()

    def job(self, job_id: str) -> dict:
        return self.trainer.get(job_id).snapshot()

    def cancel(self, job_id: str) -> dict:
        return self.trainer.cancel(job_id).snapshot()

    def jobs(self) -> dict:
        active, last = self.trainer.fleet_active(), self.trainer.fleet_last()
        return {"active": active.snapshot() if active else None, "last": last.snapshot() if last else None}

    # ---- runs and impact ----
    def runs(self) -> dict:
        return {"runs": self.store.list()}

    def run(self, run_id: str) -> dict:
        return self.store.get(run_id)

    def impact(self, req) -> dict:
        self._follow_fleet()
        base = self._require_model()
        if self.trained is None:
            raise ApiError(409, None, "no trained model yet: run a training job first", error="no_trained_model")
        report = impact.run(base, self.trained, self.trained_run, limit=req.limit, max_new_tokens=req.max_new_tokens,
                            seed=self._seed(req.seed))
        self.store.write_file(self.trained_run, "impact.json", json.dumps(report, indent=2))
        self.store.write_file(self.trained_run, "impact.csv", impact.to_csv(report))
        return report

    def impact_file(self, run_id: str, kind: str) -> str:
        return self.store.read_file(run_id, f"impact.{kind}")
