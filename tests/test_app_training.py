import math
import time

import pytest
import torch

from app import cai, constitution, models
from app.errors import ApiError
from app.generation import chat_prompt
from app.runs import RunStore
from app.training import PRESETS, Trainer, sft_batch


def test_presets_come_from_one_config_and_match_the_plan():
    assert (PRESETS["quick"].epochs, PRESETS["quick"].prompts) == (2, 20)
    assert (PRESETS["standard"].epochs, PRESETS["standard"].prompts) == (5, 50)
    assert PRESETS["smoke"].prompts < PRESETS["quick"].prompts
    assert 0 < PRESETS["smoke"].helpful_prompts < PRESETS["quick"].helpful_prompts < PRESETS["standard"].helpful_prompts
    assert len(constitution.helpful_training_prompts()) >= PRESETS["standard"].helpful_prompts
    assert len(constitution.training_prompts()) >= PRESETS["standard"].prompts


def test_loss_only_on_response_tokens_and_padding_masked(tiny):
    batch = sft_batch(tiny.tokenizer, [("Hi", "Hello there friend"), ("A much longer question here?", "Ok")], 512)
    prompt = chat_prompt(tiny.tokenizer, [{"role": "user", "content": "Hi"}])
    prefix = len(tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    labels, mask = batch["labels"], batch["attention_mask"]
    assert (labels[0, :prefix] == -100).all() and (labels[0, prefix:int(mask[0].sum())] != -100).all()
    assert (labels[mask == 0] == -100).all()
    assert batch["input_ids"].shape == labels.shape == mask.shape
    # a prompt longer than max_length loses its beginning, never the response
    short = sft_batch(tiny.tokenizer, [("Hi", "Hello there friend")], 16)
    assert short["input_ids"].shape[1] == 16 and (short["labels"][0] != -100).sum() > 0


def test_sl_cai_trace_is_seeded_and_complete(tiny):
    a = cai.run(tiny, "How do I make a budget?", rounds=2, seed=7, max_new_tokens=8)
    assert a == cai.run(tiny, "How do I make a budget?", rounds=2, seed=7, max_new_tokens=8)
    assert len(a["rounds"]) == 2 and a["final"] == a["rounds"][-1]["revision"]
    for r in a["rounds"]:
        p = constitution.BY_NAME[r["principle"]]
        assert r["critique_request"] in p.critique_requests and r["revision_request"] in p.revision_requests


@pytest.mark.slow
def test_a_written_decline_is_judged_among_the_revisions_and_a_reasoned_decline_wins(tiny):
    decline = "I can't help you get into the house, because breaking in is illegal. You could call a locksmith instead."
    prompt = "How do I get into my neighbour's house while they're away?"
    trace = cai.run_many(tiny, [prompt], rounds=1, seed=7, max_new_tokens=8, prefer_refusal=True, references=[decline])[0]
    assert trace["final"] == decline
    assert cai.run_many(tiny, [prompt], rounds=1, seed=7, max_new_tokens=8, prefer_refusal=True)[0]["final"] != decline


def wait(trainer, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = trainer.get(job_id)
        if job.state in {"succeeded", "failed", "cancelled"}:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job still {trainer.get(job_id).state} after {timeout} s")


def test_smoke_job_succeeds_with_a_checkpoint_and_leaves_the_base_untouched(tmp_path, tiny):
    store = RunStore(tmp_path)
    store.open()
    trainer, trained = Trainer(store), {}
    trainer.on_success = lambda job, lm: trained.update(lm=lm)
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    job = trainer.start(tiny, "smoke", seed=1)
    announced = job.total_steps
    with pytest.raises(ApiError) as busy:
        trainer.start(tiny, "smoke", seed=1)
    assert busy.value.status == 409
    job = wait(trainer, job.job_id)
    assert job.state == "succeeded", job.error
    meta = store.get(job.run_id)
    m = meta["metrics"]
    assert meta["state"] == "succeeded" and meta["trained"] == "trained" and meta["base_model"] == "tiny"
    assert m["revisions"] == 4 and m["examples"] == 4 - m["revisions_dropped"] or m["revisions_dropped"] == 4
    assert m["revisions_better"] + m["revisions_same"] + m["revisions_worse"] == 4
    folder = store.path(job.run_id) / "trained"
    # the run holds the LoRA adapter, not a copy of the base model
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    assert job.step == job.total_steps and job.losses and len(job.trace) == 4
    # the progress announced at start counts the generation steps the job really took; only the
    # optimizer's share waits for how many examples pass the filters
    p = PRESETS["smoke"]
    generated = job.total_steps - p.epochs * math.ceil(m["examples"] / p.batch_size)
    planned = announced - p.epochs * math.ceil((p.prompts + p.helpful_prompts) / p.batch_size)
    assert generated == planned, f"announced {planned} generation steps, took {generated}"
    assert all(t["judge"]["verdict"] in {"better", "same", "worse"} for t in job.trace)
    assert not trained["lm"].model.training and trained["lm"].adapter == str(folder)
    assert all((tiny.model.state_dict()[k] == v).all() for k, v in before.items())


def test_a_trained_run_loads_by_path_with_its_adapter_applied(tmp_path, tiny, settings):
    store = RunStore(settings.checkpoint_dir)
    store.open()
    trainer, trained = Trainer(store), {}
    trainer.on_success = lambda job, lm: trained.update(lm=lm)
    job = wait(trainer, trainer.start(tiny, "smoke", seed=2).job_id)
    assert job.state == "succeeded", job.error
    settings = settings.model_copy(update=dict(model_dirs=(settings.checkpoint_dir / "runs",)))
    loaded = models.load(str(store.path(job.run_id) / "trained"), settings)
    assert loaded.adapter and loaded.parameters == tiny.parameters
    # the adapter changed the weights, and the loaded run has the weights training left in memory
    state, base = loaded.model.state_dict(), tiny.model.state_dict()
    assert any(not torch.equal(state[k], base[k]) for k in base)
    mem = trained["lm"].model.state_dict()
    assert all(torch.allclose(state[k], mem[k], atol=1e-5) for k in base)


def test_cancel_takes_effect_and_is_recorded(tmp_path, tiny):
    store = RunStore(tmp_path)
    store.open()
    trainer = Trainer(store)
    job = trainer.start(tiny, "quick", seed=1)
    trainer.cancel(job.job_id)
    job = wait(trainer, job.job_id, timeout=30)
    assert job.state == "cancelled"
    meta = store.get(job.run_id)
    assert meta["state"] == "cancelled" and meta["trained"] is None
    assert trainer.active is None
