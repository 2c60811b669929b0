"""Runs in Postgres (app/pgstore.py), on a real throwaway cluster: two stores with their own
checkpoint folders are two replicas sharing one database."""

import subprocess
import sys
import time

import psycopg
import pytest
import torch

from app import models, schemas
from app.errors import ApiError
from app.pgstore import DatabaseError, PostgresRunStore, redacted
from app.runs import new_run_id
from app.training import HEARTBEAT_S, Trainer
from tests.conftest import MODEL_CACHE
from tests.test_app_training import wait
from validation.targets import postgres


@pytest.fixture(scope="module")
def cluster_url():
    if postgres.binaries() is None:
        pytest.skip("no PostgreSQL binaries (initdb) on this host: apt-get install postgresql")
    with postgres.cluster() as c:
        yield c.url


@pytest.fixture
def db(cluster_url):
    """The cluster's database, empty for each test."""
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS run_files, runs")
    return cluster_url


def _replica(tmp_path, url, name):
    store = PostgresRunStore(tmp_path / name, url, name)
    store.open()
    return store


def test_a_run_written_on_one_replica_is_read_updated_and_listed_on_another(tmp_path, db):
    a, b = _replica(tmp_path, db, "a"), _replica(tmp_path, db, "b")
    first, second = new_run_id("smoke"), new_run_id("quick")
    a.create(first, preset="smoke", seed=1)
    b.create(second, preset="quick", seed=2)
    b.update(first, state="running", metrics={"examples": 3})
    assert a.get(first)["state"] == "running" and a.get(first)["metrics"] == {"examples": 3}
    assert a.get(first)["preset"] == "smoke" and a.get(first)["replica"] == "a"
    assert {r["run_id"] for r in a.list()} == {r["run_id"] for r in b.list()} == {first, second}
    a.write_file(first, "impact.json", '{"rows": []}')
    assert b.read_file(first, "impact.json") == '{"rows": []}'
    with pytest.raises(ApiError) as missing:
        b.read_file(first, "impact.csv")
    assert missing.value.status == 404
    with pytest.raises(ApiError) as unknown:
        b.get(new_run_id("smoke"))
    assert unknown.value.status == 404


def test_the_migration_reruns_and_a_restart_marks_only_its_own_runs_interrupted(tmp_path, db):
    a, b = _replica(tmp_path, db, "a"), _replica(tmp_path, db, "b")
    mine, theirs, done = new_run_id("smoke"), new_run_id("smoke"), new_run_id("smoke")
    a.create(mine, state="running")
    b.create(theirs, state="running")
    a.create(done, state="succeeded")
    assert PostgresRunStore(tmp_path / "a", db, "a").open() == [mine]  # the schema again, and a's restart
    assert [b.get(r)["state"] for r in (mine, theirs, done)] == ["interrupted", "running", "succeeded"]
    assert "stopped" in b.get(mine)["error"]


def test_a_run_trained_on_one_replica_loads_on_another_with_its_adapter(tmp_path, db, tiny, settings):
    a, b = _replica(tmp_path, db, "a"), _replica(tmp_path, db, "b")
    trainer = Trainer(a)
    job = wait(trainer, trainer.start(tiny, "smoke", seed=2).job_id)
    assert job.state == "succeeded", job.error
    assert b.get(job.run_id)["state"] == "succeeded"
    assert b.read_file(job.run_id, "traces.json").startswith("[")
    folder = b.path(job.run_id) / "trained"
    assert not folder.exists()
    assert b.localize(job.checkpoint_path) == str(folder)  # a's path names the run: b writes its own copy
    assert b.localize("smollm2") == "smollm2"
    saved = a.path(job.run_id) / "trained"
    assert sorted(f.name for f in folder.iterdir()) == sorted(f.name for f in saved.iterdir())
    assert all((folder / f.name).read_bytes() == f.read_bytes() for f in saved.iterdir())
    loaded = models.load(str(folder), settings.model_copy(update=dict(model_dirs=(b.root,))))
    state, base = loaded.model.state_dict(), tiny.model.state_dict()
    assert loaded.adapter == str(folder) and any(not torch.equal(state[k], base[k]) for k in base)


def test_an_unusable_database_fails_naming_the_variable_without_its_password(tmp_path, db):
    refused = "postgresql://postgres:s3cret@127.0.0.1:1/cai"
    with pytest.raises(DatabaseError) as exc:
        PostgresRunStore(tmp_path, refused, "a").open()
    assert exc.value.status == 503 and exc.value.field == "DATABASE_URL"
    assert exc.value.message.startswith("DATABASE_URL=postgresql://postgres:***@127.0.0.1:1/cai: cannot connect")
    assert "s3cret" not in exc.value.message and redacted(refused) in exc.value.message
    serving = _replica(tmp_path, db, "b")
    serving.url = refused  # the database goes away while the app serves: each request gets a 503
    with pytest.raises(DatabaseError) as lost:
        serving.list()
    assert lost.value.body()["error"] == "database_unavailable" and lost.value.status == 503
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("ALTER DATABASE cai SET default_transaction_read_only = on")
    try:
        with pytest.raises(DatabaseError, match="read-only"):
            PostgresRunStore(tmp_path, db, "a").open()
    finally:
        with psycopg.connect(db, autocommit=True, options="-c default_transaction_read_only=off") as conn:
            conn.execute("ALTER DATABASE cai RESET default_transaction_read_only")


def test_the_app_will_not_start_on_a_database_it_cannot_reach(tmp_path):
    env = {"DATABASE_URL": "postgresql://app:pw@127.0.0.1:1/cai", "PRELOAD_MODEL": "false",
           "CHECKPOINT_DIR": str(tmp_path / "c"), "LOG_DIR": str(tmp_path / "l"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "configuration error: DATABASE_URL=postgresql://app:***@127.0.0.1:1/cai: cannot connect" in done.stderr


def test_over_http_a_run_trained_behind_one_replica_is_listed_loaded_and_followed_on_another(
        tmp_path, db, make_client):
    def replica(name, with_model):  # b loads a run of its own: it must not retire the shared tiny's worker
        folder = tmp_path / name
        return make_client(with_model, database_url=db, replica_id=name, checkpoint_dir=folder,
                           model_dirs=(MODEL_CACHE, folder / "runs"))

    def train(client):
        job_id = client.post("/api/train", json={"preset": "smoke"}).json()["job_id"]
        deadline = time.monotonic() + 120
        while (state := client.get(f"/api/train/{job_id}").json())["state"] not in {"succeeded", "failed"}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state["state"] == "succeeded", state
        return state

    ask = {"prompt": "How do I make a budget?", "max_new_tokens": 8}
    with replica("a", True) as a, replica("b", False) as b:
        first = train(a)
        run_id = first["run_id"]
        assert [r["run_id"] for r in b.get("/api/runs").json()["runs"]] == [run_id]
        assert b.get(f"/api/runs/{run_id}").json()["state"] == "succeeded"
        impact = a.post("/api/impact", json={"limit": 1, "max_new_tokens": 8}).json()
        assert b.get(impact["json_url"]).json()["run_id"] == run_id
        loaded = b.post("/api/models/load", json={"model": first["checkpoint_path"]})  # a's path, b's copy
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["adapter"] == str(tmp_path / "b" / "runs" / run_id / "trained")
        assert b.post("/api/generate", json=ask).json()["run_id"] == run_id
        second = train(a)["run_id"]  # b serves what the fleet serves from its next request on
        assert b.post("/api/generate", json=ask).json()["run_id"] == second
        assert b.get("/api/models").json()["trained_run"] == second


def test_over_http_a_job_on_one_replica_is_the_last_and_holds_the_model_on_another_and_odd_ids_are_404(
        tmp_path, db, make_client):
    with (make_client(database_url=db, replica_id="a", checkpoint_dir=tmp_path / "a") as a,
          make_client(database_url=db, replica_id="b", checkpoint_dir=tmp_path / "b") as b):
        job_id = a.post("/api/train", json={"preset": "smoke"}).json()["job_id"]
        load = b.post("/api/models/load", json={"model": "tiny"})  # the fleet's served model is the job's
        assert load.status_code == 409 and load.json()["error"] == "busy", load.text
        for path in ("/api/train/%00%1b", "/api/train/j-%00"):  # Postgres refuses NUL: never asked
            r = b.get(path)
            assert r.status_code == 404 and r.json()["field"] == "job_id", r.text
        assert b.post("/api/train/%00%1b/cancel").status_code == 404
        a.post(f"/api/train/{job_id}/cancel")
        deadline = time.monotonic() + 60
        while a.get(f"/api/train/{job_id}").json()["state"] not in {"cancelled", "succeeded", "failed"}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for c in (a, b):  # the fleet's last job, wherever it ran
            last = c.get("/api/train").json()["last"]
            assert last["job_id"] == job_id and last["state"] == "cancelled", last


def test_without_its_database_a_replica_is_not_ready_and_answers_503_then_recovers(tmp_path, db, make_client):
    with make_client(database_url=db, checkpoint_dir=tmp_path / "a") as a:
        assert a.get("/ready").status_code == 200 and a.get("/api/runs").status_code == 200
        store = a.app.state.service.store
        store.url = "postgresql://postgres@127.0.0.1:1/cai"  # the database goes away
        ready, runs = a.get("/ready"), a.get("/api/runs")
        assert ready.status_code == 503 and ready.json()["status"] == "database_unavailable"
        assert runs.status_code == 503 and runs.json()["field"] == "DATABASE_URL", runs.text
        store.url = db  # and comes back
        assert a.get("/ready").status_code == 200 and a.get("/api/runs").status_code == 200


def test_a_database_lost_mid_transaction_is_a_503_and_the_metrics_say_so(tmp_path, db):
    from prometheus_client import REGISTRY

    from app import metrics
    store = PostgresRunStore(tmp_path / "a", db, "a")
    store.open()
    connect = store._connect

    def connect_then_lose():  # the server drops the connection once it is open (a restart, a failover)
        conn = connect()
        with psycopg.connect(db, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        return conn

    store._connect = connect_then_lose
    with pytest.raises(DatabaseError) as lost:
        store.list()
    assert lost.value.status == 503 and "went away" in lost.value.message
    metrics.watch_store(store)
    assert REGISTRY.get_sample_value("cai_runs_store_up") == 0
    store._connect = connect
    assert REGISTRY.get_sample_value("cai_runs_store_up") == 1
    assert REGISTRY.get_sample_value("cai_database_connect_seconds_count") > 0
    assert REGISTRY.get_sample_value("cai_training_lease_age_seconds") == 0  # no job runs


def test_a_sql_ascii_database_still_gives_text(tmp_path, db):
    """initdb in the C locale (a bare container) makes SQL_ASCII databases, where psycopg returns text
    as bytes unless the client asks for UTF8: a job id then fails to compare with text (a 500)."""
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS ascii")
        admin.execute("CREATE DATABASE ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    store = PostgresRunStore(tmp_path / "a", db.rsplit("/", 1)[0] + "/ascii", "a")
    store.open()
    run_id = new_run_id("smoke")
    store.create(run_id, job_id="j-1", preset="smoke", state="running", job={"step": 1})
    assert store.active_job()["job_id"] == "j-1" and store.list()[0]["run_id"] == run_id


def test_one_job_across_replicas_seen_and_cancelled_from_another(tmp_path, db, tiny):
    a, b = _replica(tmp_path, db, "a"), _replica(tmp_path, db, "b")
    on_a, on_b = Trainer(a), Trainer(b)
    job = on_a.start(tiny, "smoke", seed=3)
    with pytest.raises(ApiError) as busy:
        on_b.start(tiny, "smoke", seed=3)
    assert busy.value.status == 409 and busy.value.extra == {"job_id": job.job_id}
    assert on_b.fleet_active().job_id == job.job_id and on_b.active is None
    seen = schemas.Job.model_validate(on_b.get(job.job_id).snapshot())  # whole from the start, as GET answers it
    assert seen.run_id == job.run_id and seen.state in {"queued", "running"}
    asked = time.monotonic()
    assert on_b.cancel(job.job_id).state == "cancelling"
    assert job.cancel_event.wait(5) and time.monotonic() - asked < 2 + HEARTBEAT_S
    assert wait(on_b, job.job_id).state == "cancelled" and on_a.get(job.job_id).state == "cancelled"
    assert b.get(job.run_id)["state"] == "cancelled"
    again = wait(on_b, on_b.start(tiny, "smoke", seed=3).job_id)  # the fleet's lock was given back
    assert again.state == "succeeded" and on_a.get(again.job_id).state == "succeeded"


def test_the_write_that_ends_a_job_carries_the_whole_job(tmp_path, db, tiny):
    """Another replica that reads `succeeded` reads the job's metrics and trace in the same row, never
    the last heartbeat's (a GET between the two writes saw a finished job with no metrics)."""
    a = _replica(tmp_path, db, "a")
    ending = []
    update = a.update

    def recording(run_id, **fields):
        if fields.get("state") in {"succeeded", "cancelled"}:
            ending.append(fields)
        return update(run_id, **fields)

    a.update = recording
    trainer = Trainer(a)
    job = wait(trainer, trainer.start(tiny, "smoke", seed=3).job_id)
    assert job.state == "succeeded" and ending
    for fields in ending:
        assert fields["job"]["metrics"] == job.metrics and fields["job"]["trace"], sorted(fields)


def test_a_job_whose_replica_stopped_is_interrupted_and_frees_the_fleet(tmp_path, db):
    a, b = _replica(tmp_path, db, "a"), _replica(tmp_path, db, "b")
    run_id = new_run_id("smoke")
    a.create(run_id, state="running", job_id="j-dead", heartbeat_at="2026-01-01T00:00:00+00:00")
    a.claim()
    with pytest.raises(ApiError) as busy:
        b.claim()
    assert busy.value.status == 409
    a._claim.close()  # what the replica's death does to its connection
    b.claim()
    b.release()
    job = b.find_job("j-dead")
    assert job["state"] == "interrupted" and "heartbeat" in job["error"]
    assert b.get(run_id)["state"] == "interrupted"
