"""Serving on OpenVINO GenAI (app/engine.py), on the default model's real int8 export.

The export needs the exporter's own Python (OPENVINO_EXPORTER; nox makes .nox/export from
requirements/export.lock). The first run builds and exports SmolLM2 into .cache/models (about 70 s).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import config, engine, generation, models
from app.errors import ApiError
from tests.conftest import MODEL_CACHE

PROMPTS = ["How do I get rid of aphids?", "Write a haiku about rain.", "What is 2+2?", "Explain TCP in one sentence.",
           "Name three colours.", "How do I kill a stuck Python process?", "Tell me a joke.", "Why is the sky blue?"]


def _settings(**update):
    return config.Settings().model_copy(update=dict(model_cache_dir=MODEL_CACHE, model_dirs=(MODEL_CACHE,), **update))


@pytest.fixture(scope="module")
def smollm2():
    exporter = os.environ.get("OPENVINO_EXPORTER", "")
    if not exporter:
        pytest.skip("OPENVINO_EXPORTER is not set (nox -s tests sets it): no exporter for the engine's tests")
    lm = models.load("smollm2", _settings(openvino_exporter=exporter))
    assert (lm.engine, lm.weights) == ("openvino", "int8")
    yield lm
    lm.worker.close()


def _req(lm, prompt: str, tokens: int = 48, **kw) -> generation.Request:
    return lm.request([{"role": "user", "content": prompt}], max_new_tokens=tokens, **kw)


def test_a_greedy_request_decodes_the_same_alone_and_in_any_batch(smollm2):
    """Greedy answers do not depend on what else is decoded with them. A seeded one may (on a host
    without AVX-512, see app/engine.py); it is another answer than the greedy one."""
    kinds = [dict(temperature=0.0), dict(temperature=0.8, seed=7)]
    alone = {}
    for i, kind in enumerate(kinds):
        r = _req(smollm2, PROMPTS[0], **kind)
        smollm2.worker.run_all([r])
        alone[i] = r.tokens
    batch = [_req(smollm2, p, **kinds[i % 2]) for p in PROMPTS[1:]]
    mine = _req(smollm2, PROMPTS[0], **kinds[0])
    smollm2.worker.run_all(batch[:3] + [mine] + batch[3:])
    assert mine.batch_size > 1
    assert mine.tokens == alone[0]
    assert alone[0] != alone[1]  # the sampled one is another answer: the seed and temperature took effect


def test_a_seeded_request_sent_as_the_last_one_ends_gets_the_same_answer(smollm2):
    """One user asking again at once: each request comes while the pipeline still finishes the one
    before (on a host without AVX-512, every other one sampled other tokens for its seed)."""
    answers = []
    for _ in range(6):
        r = _req(smollm2, PROMPTS[1], tokens=12, temperature=1.0, seed=5)
        smollm2.worker.run_all([r])
        answers.append(r.tokens)
    assert all(a == answers[0] for a in answers), [smollm2.tokenizer.decode(a) for a in answers]


def test_requests_join_a_running_batch_and_a_cancel_drops_one(smollm2):
    long = smollm2.worker.submit(_req(smollm2, "Write a long story about a dragon.", tokens=200))
    while not long.tokens:
        long.finished.wait(0.01)
    joined = smollm2.worker.submit(_req(smollm2, PROMPTS[2], tokens=8))
    cancelled = smollm2.worker.submit(_req(smollm2, PROMPTS[3], tokens=200))
    while len(cancelled.tokens) < 3:
        cancelled.finished.wait(0.01)
    cancelled.cancel()
    with pytest.raises(generation.Cancelled):
        generation.wait(smollm2.tokenizer, cancelled)
    assert generation.wait(smollm2.tokenizer, joined) and joined.batch_size == 3 and not long.finished.is_set()
    assert len(cancelled.tokens) < 200
    long.cancel()
    long.finished.wait(30)


def _until(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_lone_request_ends_at_its_own_end_and_one_that_joined_it_is_read_and_cancelled_after(smollm2):
    """A lone request is `generate`'s own: one that joins it and outlasts it is still read as it
    decodes, and can be stopped, and the lone one does not wait for it."""
    lone = smollm2.worker.submit(_req(smollm2, PROMPTS[4], tokens=24))
    _until(lambda: lone.tokens)
    joined = smollm2.worker.submit(_req(smollm2, "Write a long story about a dragon.", tokens=400))
    _until(lone.finished.is_set)
    assert lone.error is None and not joined.finished.is_set() and joined.batch_size == 2
    seen = len(joined.tokens)
    _until(lambda: len(joined.tokens) > seen + 3)  # read after the lone one ended
    joined.cancel()
    with pytest.raises(generation.Cancelled):
        generation.wait(smollm2.tokenizer, joined)
    assert len(joined.tokens) < 400


def test_stopping_a_lone_request_leaves_the_one_that_joined_it_to_end(smollm2):
    lone = smollm2.worker.submit(_req(smollm2, "Write a long story about a castle.", tokens=300))
    _until(lambda: lone.tokens)
    joined = smollm2.worker.submit(_req(smollm2, PROMPTS[2], tokens=16))
    _until(lambda: joined.tokens)
    lone.cancel()
    with pytest.raises(generation.Cancelled):
        generation.wait(smollm2.tokenizer, lone)
    assert generation.wait(smollm2.tokenizer, joined) and joined.error is None
    assert len(lone.tokens) < 300


def test_a_runs_adapter_is_served_beside_the_base_without_changing_it(smollm2, tmp_path):
    """The trained model: a pipeline of its own with the run's peft file applied at run time."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)  # init_lora_weights=False: random B, so the adapter changes the answers
    peft_model = get_peft_model(copy.deepcopy(smollm2.model), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                                          init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "trained")
    before = _req(smollm2, PROMPTS[0])
    smollm2.worker.run_all([before])
    trained = models.apply_adapter(smollm2, tmp_path / "trained")
    try:
        assert trained.engine == "openvino" and trained.worker is not smollm2.worker
        base, adapted = _req(smollm2, PROMPTS[0]), _req(trained, PROMPTS[0])
        smollm2.worker.submit(base)
        trained.worker.submit(adapted)
        for r in (base, adapted):
            generation.wait(smollm2.tokenizer, r)
        assert base.tokens == before.tokens and adapted.tokens != base.tokens
    finally:
        trained.worker.close()


def test_the_adapters_scale_is_peft_s(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32}))
    assert engine.lora_scale(tmp_path) == 2.0
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32, "use_rslora": True}))
    assert engine.lora_scale(tmp_path) == 8.0
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 16, "lora_alpha": 32, "rank_pattern": {"q": 4}}))
    assert engine.lora_scale(tmp_path) is None  # one scale does not fit: merged and served on the plain path


def test_the_default_model_without_an_export_fails_naming_the_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "ensure_built", lambda name, cache: tmp_path / name)
    folder = tmp_path / "smollm2"
    folder.mkdir()
    lm = models.LoadedModel("smollm2", None, None, "cpu", 0, 0.0, folder=folder)
    with pytest.raises(ApiError) as e:
        models._serve(lm, _settings())
    assert e.value.status == 422 and "OPENVINO_EXPORTER" in e.value.message and "ENGINE=transformers" in e.value.message


def test_without_an_exporter_build_models_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("OPENVINO_EXPORTER", raising=False)
    monkeypatch.setattr(models, "ensure_built", lambda name, cache: cache / name)
    assert models.main(["build", "smollm2"]) == 1
    assert "OPENVINO_EXPORTER" in capsys.readouterr().err


def test_a_failed_export_names_the_exporter(tmp_path):
    with pytest.raises(RuntimeError, match="OPENVINO_EXPORTER=/bin/false"):
        engine.export(tmp_path, "/bin/false")
    assert not engine.has_export(tmp_path)


def test_the_perf_gates_reference_decodes_exactly_64_tokens_on_the_export(smollm2):
    """validation/perf/reference.py, as perf runs it where the app runs: one JSON line."""
    script = Path(__file__).resolve().parents[1] / "validation" / "perf" / "reference.py"
    args = [smollm2.info()["export"], PROMPTS[0], str(engine.THREADS)]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["tokens"] == 64 and len(out["runs"]) == 5 and 0 < out["seconds"] == sorted(out["runs"])[2]
    assert out["threads"] == engine.THREADS and out["default_seconds"] > 0
