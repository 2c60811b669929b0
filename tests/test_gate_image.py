"""Image-structure checks against tiny images built here FROM the local base image: one
that breaks every rule (root, no port, shell-form entrypoint, no HEALTHCHECK, a compiler, .git and
tests in /app) must fail naming each criterion; a well-formed one must pass. Needs a Docker engine
and the base image (scripts/make-base-image.sh): otherwise skipped with the reason."""

from __future__ import annotations

import contextlib
import uuid

import pytest

from validation import checks
from validation.targets import LOCAL_BASE_IMAGE, BuildFailed, build_image, docker_answers, docker_client
from validation.testing import expect_failure, make_gate

pytestmark = pytest.mark.docker
BASE = LOCAL_BASE_IMAGE

BAD = f"""FROM {BASE}
RUN mkdir -p /app/.git /app/tests /app/app && printf '#!/bin/sh\\necho cc\\n' > /usr/local/bin/gcc \\
    && chmod +x /usr/local/bin/gcc
WORKDIR /app
CMD python3 -m app
"""
GOOD = f"""FROM {BASE}
RUN mkdir -p /app/app && useradd --uid 10001 --no-create-home app
WORKDIR /app
USER 10001:10001
EXPOSE 7860
HEALTHCHECK --interval=30s CMD ["true"]
ENTRYPOINT ["/bin/sleep", "1"]
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
    e = expect_failure(checks.image_config, make_gate(target_kind="container"), attrs, criterion="image.user", measured='""')
    for cid in ("image.exposed_port", "image.entrypoint_exec", "image.healthcheck"):
        assert f"[{cid}] FAILED" in str(e)
    assert "shell form" in str(e) and "defaults to root" in str(e)
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
    assert {r.verdict for r in gate.recorder.results} == {"pass"}


def test_a_failing_build_surfaces_its_log(images, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo building && false\n")
    log = tmp_path / "build.log"
    with pytest.raises(BuildFailed) as info:
        build_image("cai-gate-selftest-broken:x", repo=tmp_path, log_path=log)
    assert "returned a non-zero code" in str(info.value)
    assert "RUN echo building && false" in info.value.log and "building" in log.read_text()
