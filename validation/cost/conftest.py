"""The cost session's options and what every test of it shares (the gate's fixtures are in validation/plugin/).

pytest validation/cost [--platform-config PATH ...] [--duty-from-watch REPORT] [--price-table PATH]

No app is started: the gate's --target, --base-url and the like are accepted and not used, so the cost
session runs beside the others with the same options (`nox -s cost -- --target container --profile ci`).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from validation.cost import duty, platforms, pricing
from validation.plugin import state


class StalePrices(UserWarning):
    """The price table was read more than pricing.MAX_AGE_DAYS days ago."""


@dataclass(frozen=True)
class CostSetup:
    configs: list[tuple[Path, str]]  # (file, the name the report gives it)
    prices: pricing.Prices
    assumptions: pricing.Assumptions


_setup_key = pytest.StashKey[CostSetup]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("cost", "monthly cost (validation/cost)")
    g.addoption("--platform-config", action="append", default=[], metavar="PATH",
                help="a platform config to price (fly.toml, railway.toml or a Cloud Run service YAML), repeatable; "
                f"default: {', '.join(platforms.REPO_CONFIGS)} at the repository root")
    g.addoption("--duty-from-watch", default=None, metavar="REPORT",
                help="take the hours a month from a watch of the live URL (reports/watch/report.json of `nox -s watch "
                "-- --base-url URL`): its up share x 730 h, an upper bound since its probes keep the machine awake; "
                "default: the profile's cost_duty_hours")
    g.addoption("--price-table", default=str(pricing.PRICES_FILE), metavar="PATH",
                help="the unit prices (default validation/cost/prices.toml)")


def _label(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _configs(config: pytest.Config, root: Path) -> list[tuple[Path, str]]:
    given = [Path(p).resolve() for p in config.getoption("--platform-config")]
    paths = given or [root / name for name in platforms.REPO_CONFIGS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise pytest.UsageError(f"--platform-config: no such file: {', '.join(missing)}")
    return [(p, _label(p, root)) for p in paths]


def _assumptions(config: pytest.Config) -> pricing.Assumptions:
    crit = state(config).recorder.criteria
    watch = config.getoption("--duty-from-watch")
    hours = duty.from_watch(watch) if watch else duty.assumed(crit.param("cost_duty_hours"), crit.profile)
    image = crit["image.size"]
    return pricing.Assumptions(hours, float(image.threshold), f"the image, at most the image.size bound {image.threshold_text}",
                               crit.param("cost_railway_usage") or {})


def pytest_configure(config: pytest.Config) -> None:
    root = Path(str(config.rootpath))
    try:
        setup = CostSetup(_configs(config, root), pricing.load_prices(config.getoption("--price-table")),
                          _assumptions(config))
    except (pricing.PricesError, platforms.ConfigError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_setup_key] = setup


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "platform_config" in metafunc.fixturenames:
        configs = metafunc.config.stash[_setup_key].configs
        metafunc.parametrize("platform_config", configs, ids=[name for _, name in configs])


@pytest.fixture(scope="session")
def cost_setup(pytestconfig: pytest.Config, recorder) -> CostSetup:
    """The configs, prices and assumptions; a price table past its age is warned about once, here."""
    setup = pytestconfig.stash[_setup_key]
    for message in setup.prices.stale(dt.date.today()):
        warnings.warn(StalePrices(message), stacklevel=1)
        recorder.note(message)
    return setup
