"""Root conftest: the validation gate's options, fixtures and report (validation/plugin/).

`pytest` alone runs the unit tests (testpaths = tests); `pytest validation/smoke` (or `nox -s smoke`)
runs the smoke gate against the target chosen with --target (see README.md).
"""

import pytest

pytest_plugins = ["validation.plugin"]


@pytest.fixture(scope="session")
def base_url(target) -> str:
    """The app's URL for pytest-playwright (overrides its --base-url fixture): the target's."""
    return target.base_url
