"""The gate plugin's command-line options and its typed per-session state.

Options: --target auto|container|process|url, --base-url, --image, --image-tag, --build-arg, --profile,
--param, --report-dir, --gate-session, --basic-auth, --health-timeout, --expect-build, --app-env.
`state(config)` is the session's GateState (report dir, recorder, target, test counts); conftests read
it there, tests through the fixtures of validation/plugin/fixtures.py. pytest_configure loads the
profile's criteria and turns SIGTERM into Ctrl-C, so fixtures tear down and containers go away.
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

from validation import criteria as criteria_mod
from validation import targets as targets_mod
from validation.gate import Gate, Recorder
from validation.targets.base import HEALTH_TIMEOUT_S

TARGETS = ("auto", "container", "process", "url")


@dataclass(frozen=True)
class GateConfig:
    """The gate's options, read once from the command line (and their GATE_* env defaults) and checked:
    tests get it from the `gate_config` fixture, conftests from `state(config).config`. Options of one
    session only (perf, e2e, watch, faults) stay with that session's conftest."""

    target: str  # as given: auto | container | process | url (the `target_kind` fixture resolves auto)
    base_url: str | None
    image: str | None  # a prebuilt image tag, instead of building
    image_tag: str
    build_args: dict[str, str]
    app_env: dict[str, str]
    auth: tuple[str, str] | None  # --basic-auth as (user, password)
    health_timeout: float
    expect_build: str | None

    @property
    def on_url(self) -> bool:
        """The app is a deployment at a URL (nothing started, nothing restarted)."""
        return self.target == "url" or bool(self.base_url)

    @classmethod
    def from_pytest(cls, config: pytest.Config) -> GateConfig:
        base_url = config.getoption("--base-url", None)
        target = config.getoption("--target")
        if target == "url" and not base_url:
            raise pytest.UsageError("--target url needs --base-url")
        raw_auth = config.getoption("--basic-auth")
        return cls(
            target=target,
            base_url=base_url,
            image=config.getoption("--image"),
            image_tag=config.getoption("--image-tag"),
            build_args=key_values(config.getoption("--build-arg"), "--build-arg"),
            app_env=key_values(config.getoption("--app-env"), "--app-env"),
            auth=tuple(raw_auth.partition(":")[::2]) if raw_auth else None,
            health_timeout=config.getoption("--health-timeout"),
            expect_build=config.getoption("--expect-build"),
        )


@dataclass
class GateState:
    """What the plugin keeps for one pytest session (in config.stash), typed: conftests read it
    through `state(config)`, tests through the fixtures (validation/plugin/fixtures.py)."""

    config: GateConfig
    session: str
    report_dir: Path
    recorder: Recorder
    say: Callable[[str], None]
    t0: float  # when this gate run started: this pytest process's start (nox's venv and Docker set-up come before)
    kind: str | None = None  # the target kind, decided once by the `target_kind` fixture
    target: targets_mod.Target | None = None
    target_info: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})
    tests: dict[str, int] = field(default_factory=lambda: {"passed": 0, "failed": 0, "skipped": 0, "error": 0})
    report: Any = None  # the report dict, once written
    report_files: Any = None  # (report.json, report.md)


_state_key = pytest.StashKey[GateState]()
# the `gate` fixture of a test, for the report hook (its soft failures fail the test)
gate_key = pytest.StashKey[Gate]()


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
        default=float(_env("GATE_HEALTH_TIMEOUT", str(HEALTH_TIMEOUT_S))),
        help=f"seconds to wait for the started target's /health (default {HEALTH_TIMEOUT_S:.0f})",
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
    overrides = key_values(config.getoption("--param"), "--param")
    unknown = sorted(set(overrides) - set(crit.params))
    if unknown:
        raise pytest.UsageError(f"--param: no parameter {', '.join(unknown)} in profile {crit.profile!r}; "
                                f"its parameters: {', '.join(sorted(crit.params))}")
    crit.params.update({k: _toml_value(v) for k, v in overrides.items()})
    t0 = _process_start()
    config.stash[_state_key] = GateState(GateConfig.from_pytest(config), session, report_dir, Recorder(crit, "", session),
                                         _say_factory(config), t0)
    if threading.current_thread() is threading.main_thread():
        # nox/CI stopping us: behave like Ctrl-C so fixtures tear down and containers go away.
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _sigterm)


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


def has_state(config: pytest.Config) -> bool:
    """False when pytest_configure did not run for this config (pytest stopped before it)."""
    return _state_key in config.stash


def resolve_target_kind(config: pytest.Config) -> tuple[str, str]:
    """(kind, why) for --target, resolving auto."""
    st = state(config)
    kind, base_url = st.config.target, st.config.base_url
    if kind == "auto":
        if base_url:
            return "url", "--base-url given"
        ok, why = targets_mod.ensure_engine(say=st.say)
        if ok:
            return "container", f"a Docker engine answers ({why})"
        return "process", f"NO Docker engine answers ({why}): falling back to `python -m app`"
    if kind == "container":
        targets_mod.ensure_engine(say=st.say)  # when none answers, the target says so with its error
    return kind, "--target " + kind


def _toml_value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def key_values(items: list[str], what: str) -> dict[str, str]:
    """Repeated KEY=VALUE options (`what` names the option in the error) as a dict."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"{what} wants KEY=VALUE, got {item!r}")
        out[key] = value
    return out
