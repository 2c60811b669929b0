from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("faults", "fault catalogue (validation/faults)")
    g.addoption("--faults", default="", help="comma-separated fault names (default: the whole catalogue)")
    g.addoption("--behaviour-faults", action="store_true",
                help="also the behaviour faults, which train `quick` on the default model (about 6 min each on 2 "
                "cores; named with --faults they always run)")
    g.addoption("--fault-workers", type=int, default=2,
                help="fault runs at once (default 2: each run's app and client are mostly idle, waiting on each other)")
