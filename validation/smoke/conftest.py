"""The smoke session's own option (the gate's are in validation/plugin/)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("smoke", "smoke gate (validation/smoke)")
    g.addoption(
        "--http-url",
        default=None,
        metavar="URL",
        help="plain-http address of an https --base-url for tls.http_redirect (default: http://<its host>/, port 80)",
    )
