"""The gate as a pytest plugin (registered by the root conftest.py), in three modules:

    config.py     the command-line options (--target, --base-url, --image, --profile, --report-dir, ...),
                  read once into the frozen GateConfig, and the typed per-session GateState: `state(config)`
    fixtures.py   criteria, gate, recorder, target_kind, image, target, http, app_ready, report_dir, ...
    reporting.py  hooks: soft failures, the target's log tail on a failed test, report.json, report.md,
                  junit.xml and the criteria table at the end; a failed criterion fails the session

`base_url` (target.base_url, for pytest-playwright) is in the root conftest.py.
"""

from validation.plugin.config import GateConfig, GateState, state

pytest_plugins = ["validation.plugin.config", "validation.plugin.fixtures", "validation.plugin.reporting"]

__all__ = ["GateConfig", "GateState", "state"]
