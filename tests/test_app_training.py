import time

import pytest

from app import cai, constitution
from app.errors import ApiError
from app.runs import RunStore
from app.training import PRESETS, Trainer, sft_batch


def test_presets_come_from_one_config_and_match_the_plan():
    assert (PRESETS["quick"].epochs, PRESETS["quick"].prompts) == (2, 20)
    assert (PRESETS["standard"].epochs, PRESETS["standard"].prompts) == (5, 50)
    assert PRESETS["smoke"].prompts < PRESETS["quick"].prompts
    assert len(constitution.training_prompts()) >= PRESETS["standard"].prompts


def test_loss_only_on_response_tokens_and_padding_masked(tiny):
    batch = sft_batch(tiny.tokenizer, [("Hi", "Hello there friend"), ("A much longer question here?", "Ok")], 64)
    prefix = len(tiny.tokenizer(cai.dialogue("Hi"))["input_ids"])
    labels, mask = batch["labels"], batch["attention_mask"]
    assert (labels[0, :prefix] == -100).all() and (labels[0, prefix:int(mask[0].sum())] != -100).all()
    assert (labels[mask == 0] == -100).all()
    assert batch["input_ids"].shape == labels.shape == mask.shape


def test_sl_cai_trace_is_seeded_and_complete(tiny):
    a = cai.run(tiny, "How do I make a budget?", rounds=2, seed=7, max_new_tokens=8)
    assert a == cai.run(tiny, "How do I make a budget?", rounds=2, seed=7, max_new_tokens=8)
    assert len(a["rounds"]) == 2 and a["final"] == a["rounds"][-1]["revision"]
    for r in a["rounds"]:
        p = constitution.BY_NAME[r["principle"]]
        assert r["critique_request"] in p.critique_requests and r["revision_request"] in p.revision_requests


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
    with pytest.raises(ApiError) as busy:
        trainer.start(tiny, "smoke", seed=1)
    assert busy.value.status == 409
    job = wait(trainer, job.job_id)
    assert job.state == "succeeded", job.error
    meta = store.get(job.run_id)
    assert meta["state"] == "succeeded" and meta["trained"] == "trained" and meta["metrics"]["examples"] == 4
    assert (store.path(job.run_id) / "trained" / "model.safetensors").is_file()
    assert job.step == job.total_steps and job.losses and len(job.trace) == 4
    assert not trained["lm"].model.training
    assert all((tiny.model.state_dict()[k] == v).all() for k, v in before.items())


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
