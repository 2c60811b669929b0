"""Fixtures of the browser gate (pytest-playwright on Debian's Chromium).

- `browser_type_launch_args`: Debian's /usr/bin/chromium (or $GATE_CHROMIUM) with the flags this
  network needs; headless unless --headed; --slowmo passes through.
- `browser`: pytest-playwright's, timed: its start-up is the criterion e2e.browser_start.
- `browser_context_args`: the target's base_url (root conftest), a fixed viewport, downloads on.
- `journey`: a validation.e2e.journey.Journey on a fresh page, screenshots under
  <report dir>/screens/<test>/ linked from report.md.
- Defaults when not given on the command line: --tracing off, --video off (recording competes with
  the app for the runner's cores: measured on 2 cores it added 1-3 s to a 4 s timed step; a failed
  step still gets its screenshot, console and network log), --output <report dir>/artifacts
  (with --tracing/--video retain-on-failure, a failed test's trace.zip / video.webm are linked from
  report.md; the timed steps then include the recording's cost).
- Session `demo` (`nox -s demo` = `pytest validation/e2e -m demo` with GATE_SESSION=demo): the whole
  journey at a watchable pace (--slowmo 400 unless given), video on, written up as
  <report dir>/walkthrough.{md,html} with the screenshots and the video (walkthrough.webm).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from validation import plugin
from validation.e2e import walkthrough
from validation.e2e.browser import CHROMIUM_ARGS, chromium_executable, ensure_ffmpeg, why_no_browser
from validation.e2e.journey import Journey
from validation.gate import CLOCK, CriterionFailed

_e2e_key = pytest.StashKey[dict]()


def _given(config: pytest.Config, option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in config.invocation_params.args)


def pytest_configure(config: pytest.Config) -> None:
    st = plugin.state(config)
    report_dir: Path = st.report_dir
    if not _given(config, "--output"):
        config.option.output = str(report_dir / "artifacts")
    if not _given(config, "--tracing"):
        config.option.tracing = "off"
    if not _given(config, "--video"):
        config.option.video = "on" if st.session == "demo" else "off"
    recording = [f"{o} {getattr(config.option, o)}" for o in ("tracing", "video") if getattr(config.option, o) != "off"]
    if recording:
        st.recorder.note(f"Playwright {', '.join(recording)}: timed browser steps include the recording's CPU cost")
    if config.option.video != "off":
        ok, how = ensure_ffmpeg()
        if not ok:
            config.option.video = "off"
            st.recorder.note(f"video recording off: {how} (traces still have the filmstrip)")
    if st.session == "demo" and not _given(config, "--slowmo"):
        config.option.slowmo = 400  # a watchable pace (ms per browser action)
    config.stash[_e2e_key] = {"browser_start": None, "steps": [], "journey_s": None}


def e2e_state(config: pytest.Config) -> dict:
    return config.stash[_e2e_key]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict, pytestconfig: pytest.Config) -> dict:
    reason = why_no_browser()
    if reason:
        pytest.fail(reason, pytrace=False)
    args = dict(browser_type_launch_args)
    exe = chromium_executable()
    if exe and not args.get("channel"):
        args.setdefault("executable_path", exe)
    args["args"] = [*CHROMIUM_ARGS, *args.get("args", [])]
    return args


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}, "accept_downloads": True}


@pytest.fixture(scope="session")
def browser(launch_browser, recorder, pytestconfig: pytest.Config):
    """pytest-playwright's browser, its launch timed against e2e.browser_start."""
    t0 = time.perf_counter()
    with CLOCK.spent("browser"):
        b = launch_browser()
    seconds = time.perf_counter() - t0
    e2e_state(pytestconfig)["browser_start"] = seconds
    opts = pytestconfig.getoption("--headed")
    try:
        recorder.gate("fixture:browser").measure(
            "e2e.browser_start",
            round(seconds, 2),
            detail=f"Chromium {b.version} ({'headed' if opts else 'headless'}, {chromium_executable() or 'Playwright build'})",
            soft=True,
        )
    except CriterionFailed:  # recorded; the report and the exit status show it
        pass
    yield b
    b.close()


@pytest.fixture
def journey(page, gate, report_dir: Path, request: pytest.FixtureRequest, require_ready, pytestconfig) -> Journey:
    """A Journey on a fresh page (own context: trace and video per test), screenshots per step."""
    name = request.node.originalname
    st = e2e_state(pytestconfig)
    j = Journey(
        page,
        gate,
        shots_dir=report_dir / "screens" / name,
        prefix=f"{name}: ",
        on_step=(lambda s: st["steps"].append(s)) if name == "test_whole_journey" else None,
    )
    return j


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Link Playwright's retained traces and videos from report.md; write the demo walkthrough."""
    config = session.config
    if _e2e_key not in config.stash:
        return
    st = plugin.state(config)
    rec = st.recorder
    out = Path(config.getoption("--output")).resolve()
    videos = []
    if out.exists():
        for f in sorted(out.rglob("*")):
            if f.suffix in (".zip", ".webm") and f.is_file():
                rec.attach(f, f"playwright {'trace' if f.suffix == '.zip' else 'video'}: {f.parent.name}")
                if f.suffix == ".webm" and "whole-journey" in f.parent.name:
                    videos.append(f)
    if st.session == "demo":
        video = None
        if videos:
            video = st.report_dir / "walkthrough.webm"
            shutil.copyfile(videos[-1], video)
        e2e = e2e_state(config)
        paths = walkthrough.write(
            st.report_dir,
            e2e["steps"],
            video=video,
            browser_start=e2e["browser_start"],
            journey_s=e2e["journey_s"],
            target=st.target_info,
        )
        for p in paths:
            rec.attach(p, f"walkthrough ({p.suffix[1:]})")
        st.say(f"walkthrough: {paths[-1]}")
