"""The watch session's options and its one run (the gate's fixtures are in validation/plugin/).

pytest validation/watch [--target container|process|url] [--base-url URL] [--minutes N] [--interval S]
    [--probe-timeout S] [--restart-at S]
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest


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
    g.addoption("--minutes", type=float, default=5.0, help="how long to watch (default 5; fractions allowed)")
    g.addoption("--interval", type=float, default=10.0, help="seconds between probe rounds (default 10)")
    g.addoption("--probe-timeout", type=float, default=10.0, help="seconds each probe may take (default 10)")
    g.addoption(
        "--restart-at",
        type=float,
        default=None,
        metavar="SECONDS",
        help="restart the app this many seconds into the watch (container: docker restart; process: "
        "SIGTERM and start again) and check that the watch records it (watch.restart_incident)",
    )


def options(config: pytest.Config) -> WatchOptions:
    return WatchOptions(
        minutes=config.getoption("--minutes"),
        interval=config.getoption("--interval"),
        probe_timeout=config.getoption("--probe-timeout"),
        restart_at=config.getoption("--restart-at"),
    )


def pytest_configure(config: pytest.Config) -> None:
    o = options(config)
    if o.minutes <= 0 or o.interval <= 0 or o.probe_timeout <= 0:
        raise pytest.UsageError("--minutes, --interval and --probe-timeout must be > 0")
    if o.interval > o.duration:
        raise pytest.UsageError(f"--interval {o.interval:g} s is longer than the watch (--minutes {o.minutes:g})")
    if o.restart_at is not None:
        if config.getoption("--target") == "url" or config.getoption("--base-url", None):
            raise pytest.UsageError("--restart-at restarts the app: it needs --target container or process, not a URL")
        if not 0 <= o.restart_at < o.duration - o.interval:
            raise pytest.UsageError(
                f"--restart-at {o.restart_at:g} must be inside the watch, at least one interval before its end "
                f"(0 .. {o.duration - o.interval:g} s)"
            )


@pytest.fixture(scope="session")
def watch_options(pytestconfig: pytest.Config) -> WatchOptions:
    return options(pytestconfig)
