"""The cost.monthly check for one platform config: estimate, report section, measure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from validation.cost import platforms, pricing
from validation.gate import Gate


def monthly_cost(gate: Gate, path: Path, name: str, prices: pricing.Prices, assumptions: pricing.Assumptions,
                 say: Callable[[str], None] = lambda line: None) -> pricing.Estimate:
    """Price the config; its arithmetic becomes a report section (and terminal lines) before cost.monthly is
    judged, so a config over budget still shows why. A config that cannot be read fails naming file and field."""
    try:
        est = pricing.estimate(platforms.read(path, name), prices, assumptions)
    except platforms.ConfigError as exc:
        gate.fail("cost.monthly", None, str(exc))
    gate.recorder.section(f"Monthly cost: {name}", est.markdown(), data=est.to_dict())
    for line in est.text():
        say(line)
    gate.measure("cost.monthly", round(est.total, 2), detail=f"{name}, {est.hours:g} h a month")
    return est
