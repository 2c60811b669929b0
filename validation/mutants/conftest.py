from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("mutants", "mutation testing (validation/mutants)")
    g.addoption("--mutants-sample", type=int, default=3,
                help="mutants to run, drawn over the code sites (default 3, what CI runs: a few minutes; 40: about an "
                "hour on 2 cores; 0: every mutant, days)")
    g.addoption("--mutants-seed", type=int, default=0, help="the sample's seed (default 0: a fixed sample)")
    g.addoption("--mutants-timeout", type=float, default=420.0,
                help="seconds per mutant; a mutant whose checks run longer counts as killed (a hang is caught)")
