"""The gate as a pytest plugin (registered by the root conftest.py).

Options: --target auto|container|process|url, --base-url, --image, --profile, --report-dir, ...
Fixtures (session unless noted):
    criteria        the profile's Criteria (thresholds and params)
    gate            (function) measure / skip / timed / attach, bound to the test
    recorder        every result of the session
    target          the app under test, started once, always stopped (also on Ctrl-C / SIGTERM)
    image           the image tag under test (built from the Dockerfile unless --image), container only
    http            httpx client on target.base_url (basic auth from --basic-auth)
    app_ready       waits once for GET /ready (the default model loaded); {"ok", "seconds", ...}
    report_dir      reports/<session>/ (attachments go here)
    base_url        (root conftest.py) target.base_url, for pytest-playwright
Hooks: a failed test gets the target's log tail attached; the session ends with report.json,
report.md, junit.xml in the report dir and the criteria table printed; any failed criterion makes
the exit status non-zero.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from validation import api
from validation import criteria as criteria_mod
from validation import report as report_mod
from validation import targets as targets_mod
from validation.checks import TimedClient
from validation.gate import CLOCK, CriterionFailed, Gate, Recorder

TARGETS = ("auto", "container", "process", "url")
GATE_SESSIONS = ("smoke", "e2e", "perf", "resilience", "demo", "image", "watch")

@dataclass
class GateState:
    """What the plugin keeps for one pytest session (in config.stash), typed: conftests read it
    through `state(config)`, tests through the fixtures below."""

    session: str
    report_dir: Path
    recorder: Recorder
    say: Callable[[str], None]
    t0: float  # when this gate run started (GATE_T0 from nox, else this process's start)
    kind: str | None = None  # the target kind, decided once by the `target_kind` fixture
    target: targets_mod.Target | None = None
    target_info: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})
    tests: dict[str, int] = field(default_factory=lambda: {"passed": 0, "failed": 0, "skipped": 0, "error": 0})
    report: Any = None  # the report dict, once written
    report_files: Any = None  # (report.json, report.md)


_state_key = pytest.StashKey[GateState]()


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    g = parser.getgroup("gate", "validation gate (validation/)")
    g.addoption(
        "--target",
        choices=TARGETS,
        default=_env("GATE_TARGET", "auto"),
        help="where the app runs: container (build + run the image), process (python -m app), "
        "url (--base-url, nothing started), auto (container when a Docker engine answers, "
        "else process). Env: GATE_TARGET.",
    )
    # pytest-playwright (or pytest-base-url) adds --base-url itself; add it only when neither is here.
    if not (pluginmanager.has_plugin("playwright") or pluginmanager.has_plugin("base_url")):
        g.addoption("--base-url", default=os.environ.get("PYTEST_BASE_URL"), help="URL of a running app")
    g.addoption(
        "--image",
        default=_env("GATE_IMAGE"),
        help="use this prebuilt image tag instead of building the Dockerfile. Env: GATE_IMAGE.",
    )
    g.addoption(
        "--image-tag",
        default=_env("GATE_IMAGE_TAG", "cai-demo:latest"),
        help="tag for the image the gate builds (default cai-demo:latest)",
    )
    g.addoption(
        "--build-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra docker build arg (repeatable); DEPS_SOURCE=wheelhouse is set when wheelhouse/ has wheels",
    )
    g.addoption(
        "--profile",
        default=_env("GATE_PROFILE", "plan"),
        help=f"criteria profile in validation/criteria.toml ({', '.join(criteria_mod.profiles())}). Env: GATE_PROFILE.",
    )
    g.addoption(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one of the profile's parameters (criteria.toml [profiles.X.params]), repeatable; "
        "VALUE is read as TOML (42, true, \"text\") or else taken as a string, e.g. --param model=tiny",
    )
    g.addoption("--report-dir", default=_env("GATE_REPORT_DIR"), help="default reports/<session>/")
    g.addoption(
        "--gate-session",
        default=_env("GATE_SESSION"),
        help="session name for the report (default: from the test path, e.g. validation/smoke -> smoke)",
    )
    g.addoption(
        "--basic-auth",
        default=_env("GATE_BASIC_AUTH"),
        metavar="USER:PASSWORD",
        help="credentials for an app with BASIC_AUTH on. Env: GATE_BASIC_AUTH.",
    )
    g.addoption(
        "--health-timeout",
        type=float,
        default=float(_env("GATE_HEALTH_TIMEOUT", "180")),
        help="seconds to wait for the started target's /health (default 180)",
    )
    g.addoption(
        "--expect-build",
        default=_env("GATE_EXPECT_BUILD"),
        metavar="ID",
        help="the build id (git sha) the target must report in GET /health (health.build); default on the "
        "container target: the image's org.opencontainers.image.revision label; else the criterion is "
        "skipped. Env: GATE_EXPECT_BUILD.",
    )
    g.addoption(
        "--app-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the started app (container or process), repeatable",
    )


def _session_name(config: pytest.Config) -> str:
    name = config.getoption("--gate-session")
    if name:
        return name
    for arg in config.args:
        parts = Path(arg.split("::")[0]).parts
        if "validation" in parts and parts.index("validation") + 1 < len(parts):
            return parts[parts.index("validation") + 1]
        if parts and parts[0] == "tests":
            return "tests"
    return "pytest"


def _say_factory(config: pytest.Config):
    def say(msg: str) -> None:
        tr = config.pluginmanager.getplugin("terminalreporter")
        capman = config.pluginmanager.getplugin("capturemanager")
        ctx = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with ctx:
            if tr is not None:
                tr.write_line(f"[gate] {msg}")
            else:
                print(f"[gate] {msg}", flush=True)

    return say


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    session = _session_name(config)
    rootdir = Path(str(config.rootpath))
    report_dir = Path(config.getoption("--report-dir") or rootdir / "reports" / session).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    if not getattr(config.option, "xmlpath", None) and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(report_dir / "junit.xml")
    try:
        crit = criteria_mod.load(config.getoption("--profile"))
    except criteria_mod.CriteriaError as exc:
        raise pytest.UsageError(str(exc)) from None
    overrides = _kv(config.getoption("--param"), "--param")
    unknown = sorted(set(overrides) - set(crit.params))
    if unknown:
        raise pytest.UsageError(f"--param: no parameter {', '.join(unknown)} in profile {crit.profile!r}; "
                                f"its parameters: {', '.join(sorted(crit.params))}")
    crit.params.update({k: _toml_value(v) for k, v in overrides.items()})
    t0 = float(os.environ["GATE_T0"]) if os.environ.get("GATE_T0") else _process_start()
    config.stash[_state_key] = GateState(session, report_dir, Recorder(crit, "", session), _say_factory(config), t0)
    if session in GATE_SESSIONS or session == "pytest":
        threading.Thread(target=_prefetch_imports, name="gate-prefetch", daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        # nox/CI stopping us: behave like Ctrl-C so fixtures tear down and containers go away.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _sigterm)


PREFETCH = (
    "docker",
    "testcontainers.core.container",
    "testcontainers.core.image",
    "testcontainers.core.wait_strategies",
    "psutil",
    "prometheus_client.parser",
    "gradio_client",
)


def _prefetch_imports() -> None:
    """Import the heavy client libraries in the background while pytest collects and the target
    starts (the main thread mostly waits on I/O then): about a second less of our own overhead."""
    import importlib

    for name in PREFETCH:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _process_start() -> float:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001
        return time.time()


def pytest_unconfigure(config: pytest.Config) -> None:
    targets_mod.cleanup_all()


def state(config: pytest.Config) -> GateState:
    return config.stash[_state_key]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def recorder(pytestconfig: pytest.Config) -> Recorder:
    return state(pytestconfig).recorder


@pytest.fixture(scope="session")
def criteria(recorder: Recorder) -> criteria_mod.Criteria:
    return recorder.criteria


@pytest.fixture
def gate(request: pytest.FixtureRequest, recorder: Recorder) -> Gate:
    g = recorder.gate(request.node.nodeid)
    request.node.stash[_gate_key] = g
    return g


_gate_key = pytest.StashKey[Gate]()


@pytest.fixture(scope="session")
def report_dir(pytestconfig: pytest.Config) -> Path:
    return state(pytestconfig).report_dir


@pytest.fixture(scope="session")
def say(pytestconfig: pytest.Config):
    """Progress lines on the terminal, shown while output is captured: say("...")."""
    return state(pytestconfig).say


def resolve_target_kind(config: pytest.Config) -> tuple[str, str]:
    """(kind, why) for --target, resolving auto."""
    kind = config.getoption("--target")
    base_url = config.getoption("--base-url", None)
    if kind == "auto":
        if base_url:
            return "url", "--base-url given"
        ok, why = targets_mod.docker_answers()
        if ok:
            return "container", f"a Docker engine answers ({why})"
        return "process", f"NO Docker engine answers ({why}): falling back to `python -m app`"
    if kind == "url" and not base_url:
        raise pytest.UsageError("--target url needs --base-url")
    return kind, "--target " + kind


def _toml_value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"{what} wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out


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
    prebuilt = pytestconfig.getoption("--image")
    if prebuilt:
        try:
            targets_mod.docker_client(30).images.get(prebuilt)
        except Exception as exc:  # noqa: BLE001
            raise pytest.UsageError(f"--image {prebuilt}: not found in the local engine ({exc})") from None
        st.target_info["image"] = prebuilt
        return _image_info(prebuilt, built=False, seconds=None, log=None)
    tag = pytestconfig.getoption("--image-tag")
    log_path = st.report_dir / "build.log"
    try:
        seconds = targets_mod.build_image(
            tag, build_args=_kv(pytestconfig.getoption("--build-arg"), "--build-arg"), log_path=log_path, say=say
        )
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
    with CLOCK.spent("engine"):
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
def expected_build(pytestconfig: pytest.Config, target_kind: str, request: pytest.FixtureRequest) -> tuple[str | None, str]:
    """(the build id the target must report, where it comes from) or (None, why there is none)."""
    given = pytestconfig.getoption("--expect-build")
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
    say = st.say
    app_env = _kv(pytestconfig.getoption("--app-env"), "--app-env")
    auth = basic_auth(pytestconfig)
    health_timeout = pytestconfig.getoption("--health-timeout")
    t: targets_mod.Target | None = None
    try:
        if target_kind == "url":
            t = targets_mod.UrlTarget(pytestconfig.getoption("--base-url"), auth, health_timeout, say=say)
        elif target_kind == "process":
            t = targets_mod.ProcessTarget(
                env=app_env, health_timeout=health_timeout, log_path=st.report_dir / "target.log", say=say
            )
        else:
            img = request.getfixturevalue("image")
            t = targets_mod.ContainerTarget(
                img["tag"],
                env=app_env,
                health_timeout=health_timeout,
                mem_limit=str(recorder.criteria.param("memory_limit", "8g")),
                say=say,
            )
    except targets_mod.TargetError as exc:
        failure = exc
    else:
        failure = None
    if failure is not None:
        log_path = st.report_dir / "target.log"
        if failure.log:
            log_path.write_text(failure.log + "\n")
            recorder.attach(log_path, f"{target_kind} log (start failed)")
        with contextlib.suppress(CriterionFailed):
            cid = "health.status" if target_kind == "url" else "startup.health_time"
            recorder.gate("fixture:target").fail(cid, None, str(failure))
        targets_mod.cleanup_all()
        tail = f"\n--- {target_kind} log, last lines ---\n{failure.log}" if failure.log else " (no log)"
        pytest.fail(f"{target_kind} target failed to start: {failure}{tail}", pytrace=False)
    st.target = t
    st.target_info.update(t.describe())
    try:
        yield t
    finally:
        if t.kind != "url":
            path = t.save_log(st.report_dir / "target.log")
            if path:
                recorder.attach(path, f"{t.kind} log")
        t.stop()


@pytest.fixture(scope="session")
def auth(pytestconfig: pytest.Config) -> tuple[str, str] | None:
    """--basic-auth as (user, password), or None."""
    return basic_auth(pytestconfig)


def basic_auth(config: pytest.Config) -> tuple[str, str] | None:
    raw = config.getoption("--basic-auth")
    if not raw:
        return None
    user, _, password = raw.partition(":")
    return user, password


@pytest.fixture(scope="session")
def http(target: targets_mod.Target, pytestconfig: pytest.Config):
    with TimedClient(base_url=target.base_url, auth=basic_auth(pytestconfig), timeout=30) as client:
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


# ---------------------------------------------------------------------------------------------
# Hooks: soft failures, log attachments, report


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    g = item.stash.get(_gate_key, None)
    if rep.when == "call" and rep.passed and g is not None and g.pending:
        rep.outcome = "failed"
        rep.longrepr = "\n".join(r.message for r in g.pending)
    if rep.failed:
        st = state(item.config)
        t = st.target
        if t is not None and t.kind != "url":
            with contextlib.suppress(Exception):
                gone = t.dead()
                title = f"{t.kind} log (last 60 lines)" + (f" — {gone}" if gone else "")
                rep.sections.append((title, t.log_tail(60)))
    _count(item.config, rep)
    if rep.when == "teardown":
        rec = state(item.config).recorder
        for r in rec.results:
            if r.test == item.nodeid:
                item.user_properties.append((f"criterion {r.id}", f"{r.verdict}: {r.measured_text} ({r.threshold_text})"))


def _count(config: pytest.Config, rep: pytest.TestReport) -> None:
    tests = state(config).tests
    if rep.when == "call":
        tests["passed" if rep.passed else "failed" if rep.failed else "skipped"] += 1
    elif rep.failed:
        tests["error"] += 1
    elif rep.skipped:
        tests["skipped"] += 1


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _state_key not in config.stash:
        return
    st = state(config)
    rec: Recorder = st.recorder
    targets_mod.cleanup_all()
    now = time.time()
    timings = CLOCK.totals()
    if os.environ.get("GATE_SETUP_S"):
        timings["setup"] = round(float(os.environ["GATE_SETUP_S"]), 2)  # nox: venv install, docker scripts
    wall = now - st.t0
    overhead = max(0.0, wall - sum(timings.values()))
    timings["overhead"] = round(overhead, 2)
    interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED
    if interrupted:
        rec.note("the session was interrupted (Ctrl-C / SIGTERM): criteria not reached are `not run`")
    own = rec.criteria.items.get("harness.overhead")
    if own and rec.session in own.sessions and not interrupted and st.tests["passed"] + st.tests["failed"] > 0:
        with contextlib.suppress(CriterionFailed):
            rec.gate("session").measure(
                "harness.overhead",
                round(overhead, 2),
                detail=f"wall {wall:.1f} s - " + " - ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "overhead"),
            )
    if rec.failed() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    rep = report_mod.build(
        session=rec.session,
        criteria=rec.criteria,
        target=st.target_info,
        results=rec.results,
        attachments=rec.attachments,
        timings=timings,
        tests=st.tests,
        exit_status=int(session.exitstatus),
        started_at=st.t0,
        finished_at=now,
        notes=rec.notes,
        sections=rec.sections,
    )
    st.report = rep
    st.report_files = report_mod.write(rep, st.report_dir)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _state_key not in config.stash:
        return
    st = state(config)
    rep = st.report
    if not rep:
        return
    tr = terminalreporter
    mine = [r for r in rep["rows"] if r["verdict"] != report_mod.ELSEWHERE]
    verdict = "PASSED" if rep["passed"] else "FAILED"
    tr.section(
        f"gate: {rep['session']} on {rep['target'].get('kind')} (profile {rep['profile']}) {verdict}",
        sep="=",
        bold=True,
        red=not rep["passed"],
        green=rep["passed"],
    )
    if mine:
        tr.write_line(report_mod.render_terminal(rep, width=max(tr._tw.fullwidth, 100)))
    t = rep["timings"]
    if mine:
        tr.write_line(f"wall {rep['wall_s']} s: " + ", ".join(f"{k} {v} s" for k, v in t.items()))
    else:
        tr.write_line(f"no gate criteria in this session ({rep['session']}); wall {rep['wall_s']} s")
    js, md = st.report_files
    tr.write_line(f"report: {md}  ({js.name}, junit.xml)")
