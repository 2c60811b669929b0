from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("faults", "fault catalogue (validation/faults)")
    g.addoption("--faults", default="", help="comma-separated fault names (default: the whole catalogue)")
