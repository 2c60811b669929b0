"""Image-structure checks against tiny images built here FROM the local base image: one
that breaks every rule (its server runs as root, no port, shell-form entrypoint, no HEALTHCHECK, a
compiler, .git and tests in /app) must fail naming each criterion; a well-formed one must pass. Their
"server" is a shell script started as `... -m app`, the command line the probe looks for. Needs a Docker
engine and the base image (scripts/make-base-image.sh): otherwise skipped with the reason."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from validation import checks
from validation.targets import LOCAL_BASE_IMAGE, BuildFailed, build_image, docker_answers, docker_client, running_image
from validation.testing import expect_failure, make_gate

pytestmark = pytest.mark.docker
BASE = LOCAL_BASE_IMAGE

SERVER = "printf '#!/bin/sh\\nsleep 60\\n' > /app/server && chmod +x /app/server"
BAD = f"""FROM {BASE}
RUN mkdir -p /app/.git /app/tests /app/app && printf '#!/bin/sh\\necho cc\\n' > /usr/local/bin/gcc \\
    && chmod +x /usr/local/bin/gcc && {SERVER}
WORKDIR /app
CMD /bin/sh /app/server -m app
"""
GOOD = f"""FROM {BASE}
RUN mkdir -p /app/app && useradd --uid 10001 --no-create-home app && {SERVER}
WORKDIR /app
USER 10001:10001
EXPOSE 7860
HEALTHCHECK --interval=30s CMD ["true"]
ENTRYPOINT ["/bin/sh", "/app/server", "-m", "app"]
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    ok, why = docker_answers()
    if not ok:
        pytest.skip(f"no Docker engine answers: {why}")
    client = docker_client(120)
    try:
        client.images.get(BASE)
    except Exception:  # noqa: BLE001
        pytest.skip(f"base image {BASE} not present (scripts/make-base-image.sh makes it)")
    tags = {}
    for name, text in (("bad", BAD), ("good", GOOD)):
        ctx = tmp_path_factory.mktemp(name)
        (ctx / "Dockerfile").write_text(text)
        tag = f"cai-gate-selftest-{name}:{uuid.uuid4().hex[:8]}"
        client.images.build(path=str(ctx), tag=tag, rm=True)
        tags[name] = tag
    yield client, tags
    for tag in tags.values():
        with contextlib.suppress(Exception):
            client.images.remove(tag, force=True)


def _run_sh(client, tag):
    def run(cmd: str) -> tuple[int, str]:
        out = client.containers.run(tag, ["-c", cmd], entrypoint="sh", remove=True, user="0")
        return 0, out.decode()

    return run


def test_an_image_that_runs_as_root_fails_the_structure_checks(images):
    client, tags = images
    attrs = client.images.get(tags["bad"]).attrs
    e = expect_failure(checks.image_config, make_gate(target_kind="container"), attrs, criterion="image.exposed_port")
    for cid in ("image.entrypoint_exec", "image.healthcheck"):
        assert f"[{cid}] FAILED" in str(e)
    assert "shell form" in str(e)
    with running_image(client, tags["bad"], root_owned=("/data",)) as (exec_sh, logs):
        e = expect_failure(checks.server_user, make_gate(target_kind="container"), exec_sh, logs,
                           criterion="image.user", measured="0")
    assert "uid real/effective/saved 0/0/0" in str(e) and "/app/server -m app" in str(e)
    e = expect_failure(
        checks.image_files,
        make_gate(target_kind="container"),
        _run_sh(client, tags["bad"]),
        criterion="image.compilers",
        measured="gcc",
    )
    assert "[image.excluded_paths] FAILED" in str(e) and "measured .git, tests" in str(e)


def test_a_well_formed_image_passes(images):
    client, tags = images
    gate = make_gate(target_kind="container")
    checks.image_config(gate, client.images.get(tags["good"]).attrs)
    checks.image_files(gate, _run_sh(client, tags["good"]))
    with running_image(client, tags["good"]) as (exec_sh, logs):
        checks.server_user(gate, exec_sh, logs)
    assert {r.verdict for r in gate.recorder.results} == {"pass"}
    assert next(r for r in gate.recorder.results if r.id == "image.user").measured == "10001"


def test_a_server_that_never_starts_fails_naming_the_log():
    calls = []

    def gone(cmd):
        calls.append(cmd)
        return None, "container gone: is not running"

    e = expect_failure(checks.server_user, make_gate(target_kind="container"), gone,
                       lambda: "[run.sh] ERROR: CHECKPOINT_DIR not writable", criterion="image.user")
    assert "the container stopped" in str(e) and "not writable" in str(e) and len(calls) == 1


def test_the_probe_output_is_parsed_and_the_probe_does_not_match_itself():
    out = ("PROC 7 Uid: 10001 10001 10001 10001 :: /opt/venv/bin/python -m app \n"
           "PROC 1 Uid: 0 0 0 0 :: /usr/bin/tini -s -g -- /app/run.sh \nDONE\n")
    assert checks.parse_server_processes(out) == [
        {"pid": 7, "uids": [10001, 10001, 10001, 10001], "cmd": "/opt/venv/bin/python -m app"},
        {"pid": 1, "uids": [0, 0, 0, 0], "cmd": "/usr/bin/tini -s -g -- /app/run.sh"},
    ]
    assert "-m app" not in checks.SERVER_PROBE  # else the probe's own shell would match


def test_a_failing_build_surfaces_its_log(images, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo building && false\n")
    log = tmp_path / "build.log"
    with pytest.raises(BuildFailed) as info:
        build_image("cai-gate-selftest-broken:x", repo=tmp_path, log_path=log)
    assert "returned a non-zero code" in str(info.value)
    assert "RUN echo building && false" in info.value.log and "building" in log.read_text()


def test_the_gates_docker_client_counts_engine_calls_as_engine_time():
    from validation.gate import CLOCK

    ok, why = docker_answers()
    if not ok:
        pytest.skip(f"no Docker engine answers: {why}")
    before = CLOCK.spent_s.get("engine", 0.0)
    docker_client(30).containers.list()
    assert CLOCK.spent_s["engine"] > before
