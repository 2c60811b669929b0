import json

import pytest

from app.errors import ApiError
from app.runs import RunStore, new_run_id


class FailingModel:
    """Writes one file, then fails like a full disk would."""

    def save_pretrained(self, path, **_):
        (path / "adapter_model.safetensors").write_bytes(b"partial")
        raise OSError(28, "No space left on device")


class FailingAdapter(FailingModel):
    peft_config: dict = {}


def test_create_update_list(tmp_path):
    store = RunStore(tmp_path)
    store.open()
    rid = new_run_id("smoke")
    store.create(rid, preset="smoke", model="tiny", seed=1)
    store.update(rid, state="succeeded")
    [meta] = store.list()
    assert meta["run_id"] == rid and meta["state"] == "succeeded" and meta["preset"] == "smoke"


def test_open_marks_runs_left_active_as_interrupted_and_cleans_temp(tmp_path):
    store = RunStore(tmp_path)
    store.open()
    done, dead = new_run_id("smoke"), new_run_id("quick")
    store.create(done, state="succeeded")
    store.create(dead, state="running")
    (store.path(dead) / ".tmp-trained-abc").mkdir()
    assert RunStore(tmp_path).open() == [dead]
    assert store.get(dead)["state"] == "interrupted"
    assert store.get(done)["state"] == "succeeded"
    assert not list(store.path(dead).glob(".tmp-*"))


def test_failed_save_leaves_no_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    store.open()
    rid = new_run_id("smoke")
    store.create(rid)
    with pytest.raises(OSError):
        store.save_adapter(rid, "trained", FailingAdapter(), base_model="tiny")
    assert sorted(p.name for p in store.path(rid).iterdir()) == ["metadata.json"]
    assert json.loads((store.path(rid) / "metadata.json").read_text())["run_id"] == rid


@pytest.mark.parametrize("run_id", ["../etc", "/etc/passwd", "20261126-000000-smoke-abcd/../../x", ""])
def test_run_ids_cannot_escape_the_volume(tmp_path, run_id):
    with pytest.raises(ApiError) as err:
        RunStore(tmp_path).get(run_id)
    assert err.value.status == 404 and err.value.field == "run_id"
