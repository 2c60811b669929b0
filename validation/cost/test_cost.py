"""The monthly cost of each platform config (cost.monthly; plan: < $30 a month), its arithmetic in the report.

    nox -s cost                                              # fly.toml, railway.toml, cloudrun.yaml
    nox -s cost -- --platform-config fly.toml --param cost_duty_hours=300
    nox -s cost -- --duty-from-watch reports/watch/report.json

One test per config: the machine it asks for, priced from validation/cost/prices.toml for the hours it
runs (all month, or the duty cycle when it can stop). A config that cannot be read fails the criterion
with the file and the field.
"""

from __future__ import annotations

import pytest

from validation.cost.check import monthly_cost

pytestmark = pytest.mark.cost


def test_monthly_cost(gate, platform_config, cost_setup, say):
    path, name = platform_config
    monthly_cost(gate, path, name, cost_setup.prices, cost_setup.assumptions, say)
