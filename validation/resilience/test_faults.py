"""Faults on the container target, against containers of the gate's own sharing one pair of volumes
(host folders, like the plan's -v mounts), in order:

1. SIGKILL mid-training, start a new container on the same volumes: healthy, the completed run and its
   checkpoint intact, listed and loadable, the killed run `interrupted` with no half checkpoint, a new
   run succeeds.
2. SIGTERM during training: stops within 10 s; after a restart the run folder is consistent.
3. `docker restart` under a small bounded load: errors only inside the restart window; recovery time.
4. `quick` preset under the 8 GB limit: not OOM-killed (GATE_MEMORY_TEST=off skips it, with the reason).
5. Full checkpoint volume (a 3 MB tmpfs owned by the image's uid): the run fails with a clear error, the server stays up.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import httpx
import pytest

from validation import api
from validation import targets as T
from validation.resilience import data_checks
from validation.resilience.apps import DataDirs, wait_ready
from validation.resilience.conftest import FAULT_CRITERIA

pytestmark = [pytest.mark.resilience, pytest.mark.docker]
CKPT_IN_CONTAINER = "/app/demo/checkpoints"
# Trained checkpoints are loadable through the API when their folder is an allowed model folder.
ENV = {"MODEL_DIRS": f"/app/models:{CKPT_IN_CONTAINER}/runs"}


@pytest.fixture(scope="module", autouse=True)
def _container_only(target_kind, recorder):
    if target_kind != "container":
        g = recorder.gate("resilience:faults")
        g.recorder.target_kind = target_kind
        reason = f"fault injection needs the container target (docker kill/restart, tmpfs, memory limit); target is {target_kind}"
        for cid in FAULT_CRITERIA:
            g.recorder.add(g._result(g.criteria[cid], "skip", None, "", reason))
        pytest.skip(reason)


class Chain:
    """The current container on the shared volumes; replaced after each fault."""

    def __init__(self, apps, data: DataDirs):
        self.apps, self.data = apps, data
        self.app: T.ContainerTarget | None = None

    def start(self) -> T.ContainerTarget:
        self.app = self.apps.container(ENV, data=self.data)
        return self.app

    def running(self) -> T.ContainerTarget:
        if self.app is None or self.app.state().get("Status") != "running":
            if self.app is not None:
                self.app.stop()
            self.start()
        wait_ready(self.app.base_url)
        return self.app

    def http(self) -> httpx.Client:
        return api.Client(base_url=self.app.base_url, timeout=60)


@pytest.fixture(scope="module")
def chain(apps):
    return Chain(apps, apps.data_dirs("chain"))


def test_sigkill_mid_training(gate, chain, fault_tally, say):
    app = chain.running()
    with chain.http() as c:
        done = api.start_training(c, "smoke")
        assert done["state"] == "succeeded", f"the first smoke run did not succeed: {done.get('error')}"
        before = data_checks.snapshot_runs(chain.data.checkpoints)
        job = api.start_training(c, "quick", until=api.mid_training)
    say(f"SIGKILL with run {job['run_id']} {job['state']}/{job['phase']} at step {job['step']}/{job['total_steps']}")
    t_kill = time.monotonic()
    app.kill("SIGKILL")
    app.wait_exit(30)
    oom = app.state().get("OOMKilled")
    app.stop()
    new = chain.start()  # a new container on the same volumes
    recovery = time.monotonic() - t_kill
    wait_ready(new.base_url)
    with chain.http() as c:
        listed = c.get("/api/runs").json()["runs"]
        after = data_checks.snapshot_runs(chain.data.checkpoints)
        lost = data_checks.data_loss(gate, before, after, listed, "SIGKILL mid-training + new container", soft=True)
        gate.measure(
            "resilience.recovery_time",
            round(recovery, 2),
            detail=f"SIGKILL -> new container -> GET /health 200 (OOMKilled={oom})",
            soft=True,
        )
        data_checks.interrupted_run(gate, job["run_id"], after, listed, "SIGKILL mid-training", soft=True)
        r = c.post("/api/models/load", json={"model": f"{CKPT_IN_CONTAINER}/runs/{done['run_id']}/trained"})
        gate.measure(
            "resilience.checkpoint_loadable",
            r.status_code == 200,
            detail=f"POST /api/models/load runs/{done['run_id']}/trained -> {r.status_code} {r.text[:100]}",
            soft=True,
        )
        c.post("/api/models/load", json={"model": "tiny"})
        new_job = api.start_training(c, "smoke")
        gate.measure(
            "resilience.train_after_fault",
            new_job["state"],
            detail=f"smoke run {new_job['run_id']} after the restart"
            + (f": {new_job.get('error')}" if new_job.get("error") else ""),
            soft=True,
        )
    fault_tally["sigkill mid-training"] = not gate.pending and not lost
    gate.raise_pending()


def test_sigterm_during_training(gate, chain, fault_tally, say):
    app = chain.running()
    before = data_checks.snapshot_runs(chain.data.checkpoints)
    with chain.http() as c:
        job = api.start_training(c, "quick", until=api.mid_training)
    say(f"SIGTERM with run {job['run_id']} at step {job['step']}/{job['total_steps']}")
    t0 = time.monotonic()
    app.kill("SIGTERM")
    stopped = app.wait_exit(30)
    exit_code = app.state().get("ExitCode")
    app.stop()
    ok_stop = stopped is not None
    gate.measure(
        "resilience.sigterm_stop",
        round(stopped, 2) if ok_stop else 30.0,
        detail=f"docker kill -s TERM -> exited (code {exit_code})" if ok_stop else "still running after 30 s",
        soft=True,
    )
    on_disk = data_checks.snapshot_runs(chain.data.checkpoints)
    mid = on_disk.get(job["run_id"], {})
    problems = data_checks.partial_checkpoints({job["run_id"]: mid}) if mid else ["run folder missing"]
    if mid.get("state") == "succeeded":
        problems.append("the run says succeeded")
    new = chain.start()
    recovery = time.monotonic() - t0
    wait_ready(new.base_url)
    with chain.http() as c:
        listed = c.get("/api/runs").json()["runs"]
        after = data_checks.snapshot_runs(chain.data.checkpoints)
        row = next((r for r in listed if r.get("run_id") == job["run_id"]), {})
        if row.get("state") not in ("interrupted", "cancelled"):
            problems.append(f"listed as {row.get('state')!r} after the restart")
        if after.get(job["run_id"], {}).get("tmp"):
            problems.append(f"temp leftovers after the restart: {after[job['run_id']]['tmp']}")
        gate.measure(
            "resilience.sigterm_consistent",
            not problems,
            detail=f"run {job['run_id']}: on disk after stop {mid.get('state')!r}, listed after restart "
            f"{row.get('state')!r}" + (f"; problems: {'; '.join(problems)}" if problems else ""),
            soft=True,
        )
        lost = data_checks.data_loss(gate, before, after, listed, "SIGTERM + new container", soft=True)
        gate.measure("resilience.recovery_time", round(recovery, 2), detail="SIGTERM -> new container -> /health 200", soft=True)
    fault_tally["sigterm during training"] = not gate.pending and not lost
    gate.raise_pending()


def test_docker_restart_under_load(gate, chain, fault_tally, say):
    app = chain.running()
    before = data_checks.snapshot_runs(chain.data.checkpoints)
    samples: list[data_checks.Sample] = []
    stop = threading.Event()
    cap = 400  # bounded: at most this many requests in all

    def client_loop(kind: str) -> None:
        with api.Client(base_url=app.base_url, timeout=5) as c:
            while not stop.is_set() and len(samples) < cap:
                t = time.monotonic()
                try:
                    if kind == "health":
                        r = c.get("/health")
                    else:
                        r = c.post("/api/evaluate", json={"text": "Is it safe to share my password?", "mode": "rules"})
                    samples.append(data_checks.Sample(t, r.status_code == 200, f"{kind} {r.status_code}"))
                except httpx.HTTPError as exc:
                    samples.append(data_checks.Sample(t, False, f"{kind} {type(exc).__name__}"))
                    time.sleep(0.1)
                time.sleep(0.1)

    threads = [threading.Thread(target=client_loop, args=(k,), daemon=True) for k in ("health", "evaluate")]
    for t in threads:
        t.start()
    time.sleep(3)
    t_restart = time.monotonic()
    app.restart(timeout=10)
    try:
        app.wait_healthy(120)
        t_healthy = time.monotonic()
    except Exception:  # noqa: BLE001 - recorded by restart_window
        t_healthy = None
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(10)
    res = data_checks.restart_window(gate, list(samples), t_restart, t_healthy)
    say(f"docker restart under load: {res}")
    wait_ready(app.base_url)
    with chain.http() as c:
        listed = c.get("/api/runs").json()["runs"]
    lost = data_checks.data_loss(gate, before, data_checks.snapshot_runs(chain.data.checkpoints), listed, "docker restart")
    fault_tally["docker restart under load"] = not lost


def test_quick_not_oom_killed(gate, chain, fault_tally, say):
    if os.environ.get("GATE_MEMORY_TEST", "on").lower() in ("0", "off", "false", "no"):
        gate.skip("resilience.oom_killed", "GATE_MEMORY_TEST=off: the quick-preset memory run was not asked for")
    model = os.environ.get("GATE_MEMORY_MODEL") or gate.param("model")
    app = chain.running()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            m = None
            with contextlib.suppress(Exception):  # the container may be gone (OOM-killed): keep the peak
                m = (app.resource_sample() or {}).get("memory_bytes")
            if m:
                peak[0] = max(peak[0], m)
            time.sleep(1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with api.Client(base_url=app.base_url, timeout=1800) as c:
        r = c.post("/api/models/load", json={"model": model})
        assert r.status_code == 200, f"load {model}: {r.status_code} {r.text[:200]}"
        try:
            job = api.start_training(c, "quick", timeout=1800)
        except httpx.HTTPError as exc:
            job = {"state": f"no answer ({type(exc).__name__})", "run_id": "?"}
    stop.set()
    sampler.join(5)
    st = app.state()
    bad = bool(st.get("OOMKilled")) or job["state"] != "succeeded"
    gate.measure(
        "resilience.oom_killed",
        bad,
        detail=f"quick on {model}, limit {app.mem_limit}: run {job['state']}, OOMKilled={st.get('OOMKilled')}, "
        f"container {st.get('Status')}, peak {peak[0] / 2**30:.2f} GiB (docker stats)",
    )
    fault_tally["quick under the memory limit"] = not bad


# Smaller than a smoke run's checkpoint: tiny's LoRA adapter is ~0.5 MB (a full model copy was 10 MB).
DISK_FULL_SIZE = "256k"


def test_full_checkpoint_volume(gate, apps, fault_tally, say):
    # tmpfs `mode=` is ignored on the image's VOLUME path by docker 20.10; uid/gid are honoured.
    from validation.targets import docker_client

    user = (docker_client().images.get(apps.image).attrs.get("Config", {}).get("User") or "0").split(":")[0]
    uid = user if user.isdigit() else "10001"
    app = apps.container(ENV, data=None, tmpfs={CKPT_IN_CONTAINER: f"rw,size={DISK_FULL_SIZE},uid={uid},gid={uid},mode=0755"})
    wait_ready(app.base_url)
    with api.Client(base_url=app.base_url, timeout=60) as c:
        job = api.start_training(c, "smoke", timeout=300)
        up = c.get("/health").status_code == 200
        runs = c.get("/api/runs")
        ev = c.post("/api/evaluate", json={"text": "hello", "mode": "rules"}).status_code
    err = job.get("error") or ""
    clear = "space" in err.lower() or "disk" in err.lower()
    status = app.state().get("Status")
    ok = job["state"] == "failed" and clear and up and runs.status_code == 200 and ev == 200 and status == "running"
    gate.measure(
        "resilience.disk_full",
        ok,
        detail=f"{DISK_FULL_SIZE} tmpfs on {CKPT_IN_CONTAINER}: run {job['state']}, error {err[:80]!r}; /health up {up}, "
        f"/api/runs {runs.status_code}, evaluate {ev}, container {status}",
    )
    fault_tally["full checkpoint volume"] = ok
