"""The gate's fixtures (session-scoped unless noted), in layers like pytest-playwright's:

    gate_config     the gate's options, typed and frozen (target, base_url, image, auth, ...)
    recorder        every result of the session
    criteria        the profile's Criteria (thresholds and params)
    gate            (function) measure / skip / timed / attach, bound to the test
    report_dir      reports/<session>/ (attachments go here)
    say             progress lines on the terminal, shown while output is captured
    target_kind     container | process | url, decided once (auto resolved), printed in a banner
    image           the image under test (built from the Dockerfile unless --image), container only
    expected_build  the build id GET /health must report, or why there is none
    target          the app under test, started once, always stopped (also on Ctrl-C / SIGTERM)
    auth            --basic-auth as (user, password), or None
    http            the gate's HTTP client (validation.api.Client) on target.base_url, with `auth`
    app_ready       waits once for GET /ready (the default model loaded); {"ok", "seconds", ...}
    require_ready   (function) app_ready, failing the test when the app never became ready
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from validation import api
from validation import criteria as criteria_mod
from validation import targets as targets_mod
from validation.gate import CriterionFailed, Gate, Recorder
from validation.plugin.config import GateConfig, gate_key, resolve_target_kind, state


@pytest.fixture(scope="session")
def recorder(pytestconfig: pytest.Config) -> Recorder:
    return state(pytestconfig).recorder


@pytest.fixture(scope="session")
def criteria(recorder: Recorder) -> criteria_mod.Criteria:
    return recorder.criteria


@pytest.fixture
def gate(request: pytest.FixtureRequest, recorder: Recorder) -> Gate:
    g = recorder.gate(request.node.nodeid)
    request.node.stash[gate_key] = g
    return g


@pytest.fixture(scope="session")
def report_dir(pytestconfig: pytest.Config) -> Path:
    return state(pytestconfig).report_dir


@pytest.fixture(scope="session")
def say(pytestconfig: pytest.Config):
    """Progress lines on the terminal, shown while output is captured: say("...")."""
    return state(pytestconfig).say


@pytest.fixture(scope="session")
def target_kind(pytestconfig: pytest.Config) -> str:
    st = state(pytestconfig)
    if st.kind is None:
        kind, why = resolve_target_kind(pytestconfig)
        banner = f"TARGET: {kind.upper()} ({why})"
        st.say("=" * len(banner))
        st.say(banner)
        st.say("=" * len(banner))
        st.kind = kind
        st.recorder.target_kind = kind
        st.target_info = {"kind": kind, "why": why}
    return st.kind


@pytest.fixture(scope="session")
def image(pytestconfig: pytest.Config, target_kind: str, recorder: Recorder) -> dict:
    """The image under test (container target only): see _image_info."""
    st = state(pytestconfig)
    if target_kind != "container":
        pytest.skip(f"no image on the {target_kind} target")
    say = st.say
    targets_mod.ryuk_setting(say)
    targets_mod.sweep_stale_containers(say)
    prebuilt = st.config.image
    if prebuilt:
        try:
            targets_mod.docker_client(30).images.get(prebuilt)
        except Exception as exc:  # noqa: BLE001
            raise pytest.UsageError(f"--image {prebuilt}: not found in the local engine ({exc})") from None
        st.target_info["image"] = prebuilt
        return _image_info(prebuilt, built=False, seconds=None, log=None)
    tag = st.config.image_tag
    log_path = st.report_dir / "build.log"
    try:
        seconds = targets_mod.build_image(tag, build_args=st.config.build_args, log_path=log_path, say=say)
    except targets_mod.BuildFailed as exc:
        recorder.attach(log_path, "docker build log")
        with contextlib.suppress(CriterionFailed):
            recorder.gate("fixture:image").fail("image.build_time", None, f"{exc} (log: {log_path.name})")
        build_error = exc
    else:
        build_error = None
    if build_error is not None:
        pytest.fail(f"image build failed: {build_error}\n--- docker build log, last lines ---\n{build_error.log}", pytrace=False)
    recorder.attach(log_path, "docker build log")
    st.target_info["image"] = tag
    return _image_info(tag, built=True, seconds=seconds, log=log_path)


def _image_info(tag: str, *, built: bool, seconds: float | None, log: Path | None) -> dict:
    """{"tag", "built", "build_seconds", "log", "attrs" (docker image inspect), "run_sh" (cmd -> (code,
    output) in a throwaway container of the image), "started" (a context manager: the image started as
    it ships, with root-owned tmpfs volumes at its CHECKPOINT_DIR and LOG_DIR, like a platform's fresh
    volumes; yields (exec_sh, logs))}."""
    client = targets_mod.docker_client(120)
    attrs = client.images.get(tag).attrs
    env = dict(e.split("=", 1) for e in (attrs.get("Config") or {}).get("Env") or [] if "=" in e)
    volumes = (env.get("CHECKPOINT_DIR", targets_mod.CONTAINER_CHECKPOINTS), env.get("LOG_DIR", targets_mod.CONTAINER_LOGS))
    return {
        "tag": tag,
        "built": built,
        "build_seconds": seconds,
        "log": log,
        "attrs": attrs,
        "run_sh": lambda cmd, user="": targets_mod.run_in_image(client, tag, cmd, user),
        "started": lambda: targets_mod.running_image(client, tag, root_owned=volumes, env={"PRELOAD_MODEL": "false"}),
        "volumes": volumes,
    }


@pytest.fixture(scope="session")
def expected_build(gate_config: GateConfig, target_kind: str, request: pytest.FixtureRequest) -> tuple[str | None, str]:
    """(the build id the target must report, where it comes from) or (None, why there is none)."""
    given = gate_config.expect_build
    if given:
        return given, "--expect-build"
    if target_kind == "container":
        img = request.getfixturevalue("image")
        label = targets_mod.image_revision(img["attrs"])
        if label:
            return label, f"label {targets_mod.REVISION_LABEL} of {img['tag']}"
        return None, f"image {img['tag']} has no {targets_mod.REVISION_LABEL} label and no --expect-build ID was given"
    return None, f"no expected build: give --expect-build ID (env GATE_EXPECT_BUILD) on the {target_kind} target"


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest, pytestconfig: pytest.Config, target_kind: str, recorder: Recorder):
    st = state(pytestconfig)
    cfg = st.config
    app = targets_mod.start_target(
        target_kind,
        base_url=cfg.base_url,
        auth=cfg.auth,
        image=request.getfixturevalue("image")["tag"] if target_kind == "container" else None,
        env=cfg.app_env,
        health_timeout=cfg.health_timeout,
        mem_limit=str(recorder.criteria.param("memory_limit")),
        log_path=st.report_dir / "target.log",
        say=st.say,
    )
    try:
        with app as t:
            st.target = t
            st.target_info.update(t.describe())
            try:
                yield t
            finally:
                _keep_log(t, st.report_dir, recorder)
    except targets_mod.TargetError as exc:
        if st.target is not None:  # raised by a test's own target use, not by starting this one
            raise
        _start_failed(exc, target_kind, st.report_dir, recorder)


def _keep_log(t: targets_mod.Target, report_dir: Path, recorder: Recorder) -> None:
    if t.kind != "url":
        path = t.save_log(report_dir / "target.log")
        if path:
            recorder.attach(path, f"{t.kind} log")


def _start_failed(failure: targets_mod.TargetError, target_kind: str, report_dir: Path, recorder: Recorder) -> None:
    """The target did not come up: its start-up criterion fails with the reason, the log attached."""
    log_path = report_dir / "target.log"
    if failure.log:
        log_path.write_text(failure.log + "\n")
        recorder.attach(log_path, f"{target_kind} log (start failed)")
    with contextlib.suppress(CriterionFailed):
        cid = "health.status" if target_kind == "url" else "startup.health_time"
        recorder.gate("fixture:target").fail(cid, None, str(failure))
    targets_mod.cleanup_all()
    tail = f"\n--- {target_kind} log, last lines ---\n{failure.log}" if failure.log else " (no log)"
    pytest.fail(f"{target_kind} target failed to start: {failure}{tail}", pytrace=False)


@pytest.fixture(scope="session")
def gate_config(pytestconfig: pytest.Config) -> GateConfig:
    """The gate's options, typed and frozen (validation/plugin/config.py GateConfig)."""
    return state(pytestconfig).config


@pytest.fixture(scope="session")
def auth(gate_config: GateConfig) -> tuple[str, str] | None:
    """--basic-auth as (user, password), or None."""
    return gate_config.auth


@pytest.fixture(scope="session")
def http(target: targets_mod.Target, auth: tuple[str, str] | None):
    with api.Client(base_url=target.base_url, auth=auth, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def app_ready(http, target: targets_mod.Target, criteria: criteria_mod.Criteria) -> dict:
    """Wait once for GET /ready 200; {"ok", "seconds" (polling), "since_start", "last"}."""
    since_start = time.monotonic() - target.started_at if target.started_at else 0.0
    budget = float(criteria["ready.time"].threshold) - since_start + 5
    st = api.wait_ready(http, timeout=max(budget, 5), dead=target.dead)
    st["since_start"] = since_start
    return st


@pytest.fixture
def require_ready(app_ready: dict) -> dict:
    if not app_ready["ok"]:
        pytest.fail(f"the app never became ready (GET /ready: {app_ready['last']})", pytrace=False)
    return app_ready


