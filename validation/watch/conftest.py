"""The watch session's options and its one run (the gate's fixtures are in validation/plugin/).

pytest validation/watch [--target container|process|url] [--base-url URL] [--minutes N] [--interval S]
    [--probe-timeout S] [--restart-at S]

Defaults follow the target. A live URL: 5 minutes, a round every 10 s, no restart. An app the gate
starts itself (container, process): watching a fresh local app for long shows little, so by default
1 minute, a round every 2 s, and a restart 20 s in, which the watch must record as an incident (the
CI run: `nox -s ... watch -- --target container` needs no watch option).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from validation.plugin import state


@dataclass(frozen=True)
class WatchOptions:
    minutes: float
    interval: float
    probe_timeout: float
    restart_at: float | None

    @property
    def duration(self) -> float:
        return self.minutes * 60


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("watch", "uptime watch (validation/watch)")
    g.addoption("--minutes", type=float, default=None,
                help="how long to watch (default: 5 on a URL, 1 on an app the gate starts; fractions allowed)")
    g.addoption("--interval", type=float, default=None,
                help="seconds between probe rounds (default: 10 on a URL, 2 on an app the gate starts)")
    g.addoption("--probe-timeout", type=float, default=10.0, help="seconds each probe may take (default 10)")
    g.addoption(
        "--restart-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="restart the app this many seconds into the watch (container: docker restart; process: "
        "SIGTERM and start again) and check that the watch records it (watch.restart_incident); default: "
        "20 on an app the gate starts, none on a URL; a negative value: no restart",
    )


# (minutes, interval, restart_at) when not given: a live URL / an app the gate starts itself
URL_DEFAULTS = (5.0, 10.0, None)
LOCAL_DEFAULTS = (1.0, 2.0, 20.0)


def options(config: pytest.Config, on_url: bool) -> WatchOptions:
    """The watch's shape: the options given, else the defaults for a URL or for an app the gate starts."""
    minutes, interval, restart_at = URL_DEFAULTS if on_url else LOCAL_DEFAULTS
    given = {name: config.getoption(name) for name in ("--minutes", "--interval", "--restart-at")}
    if given["--restart-at"] is not None:
        restart_at = given["--restart-at"] if given["--restart-at"] >= 0 else None
    elif given["--minutes"] is not None or given["--interval"] is not None:
        restart_at = None  # a watch shaped by hand restarts only when asked to
    return WatchOptions(
        minutes=given["--minutes"] if given["--minutes"] is not None else minutes,
        interval=given["--interval"] if given["--interval"] is not None else interval,
        probe_timeout=config.getoption("--probe-timeout"),
        restart_at=restart_at,
    )


def pytest_configure(config: pytest.Config) -> None:
    on_url = state(config).config.on_url
    o = options(config, on_url)
    if o.minutes <= 0 or o.interval <= 0 or o.probe_timeout <= 0:
        raise pytest.UsageError("--minutes, --interval and --probe-timeout must be > 0")
    if o.interval > o.duration:
        raise pytest.UsageError(f"--interval {o.interval:g} s is longer than the watch (--minutes {o.minutes:g})")
    if o.restart_at is not None:
        if on_url:
            raise pytest.UsageError("--restart-at restarts the app: it needs --target container or process, not a URL")
        if not 0 <= o.restart_at < o.duration - o.interval:
            raise pytest.UsageError(
                f"--restart-at {o.restart_at:g} must be inside the watch, at least one interval before its end "
                f"(0 .. {o.duration - o.interval:g} s)"
            )


@pytest.fixture(scope="session")
def watch_options(pytestconfig: pytest.Config, gate_config) -> WatchOptions:
    return options(pytestconfig, gate_config.on_url)
