"""The duty cycle: hours a month a machine that can stop (auto-stop, scale to zero, sleep) runs.

Either the profile's stated assumption (criteria.toml `cost_duty_hours`) or what a watch of the live
URL saw (`nox -s watch -- --base-url ...`, its reports/watch/report.json): the share of probe rounds
the app answered, extrapolated to a month as if every hour of the month were like the watched window.
The watch's own probes keep an auto-stopping machine awake, so a watch measures the app while it is in
use: for a demo that is an upper bound (a healthy app watched all along gives the whole month).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from validation.cost.platforms import ConfigError
from validation.watch.writeup import SECTION_TITLE

HOURS_PER_MONTH = 730.0  # the average month: 365 days x 24 h / 12


@dataclass(frozen=True)
class Duty:
    hours: float
    why: str  # where the figure comes from, one line of the report


def assumed(hours: object, profile: str) -> Duty:
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 <= hours <= HOURS_PER_MONTH:
        raise ConfigError(f"criteria.toml cost_duty_hours = {hours!r} (profile {profile}): not hours in a month "
                          f"(0 to {HOURS_PER_MONTH:g})")
    return Duty(float(hours), f"cost_duty_hours = {hours:g} (criteria.toml, profile {profile}: an assumption)")


def _watch_section(path: Path) -> tuple[dict, dict]:
    """(the watch's summary data, the report's target) from a watch session's report.json."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--duty-from-watch {path}: not a readable report.json ({exc})") from None
    sections = report.get("sections") if isinstance(report, dict) else None
    data = next((s.get("data") for s in sections or [] if s.get("title") == SECTION_TITLE), None)
    if not isinstance(data, dict):
        raise ConfigError(f"--duty-from-watch {path}: no {SECTION_TITLE!r} section: not a watch session's report "
                          "(nox -s watch writes reports/watch/report.json)")
    return data, report.get("target") or {}


def from_watch(path: Path | str) -> Duty:
    path = Path(path)
    data, target = _watch_section(path)
    up_pct, seconds = data.get("availability_pct"), data.get("duration_s")
    if not isinstance(up_pct, int | float) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ConfigError(f"--duty-from-watch {path}: the watch has no availability_pct or duration_s (it saw no round)")
    hours = round(up_pct / 100 * HOURS_PER_MONTH, 1)
    where = data.get("base_url") or target.get("base_url") or "?"
    why = (f"watch of {where} ({target.get('kind', '?')} target) for {seconds / 60:g} min from {data.get('started')}: "
           f"up {up_pct:g} % of its rounds; a month like that window: {up_pct:g} % x {HOURS_PER_MONTH:g} h "
           f"(--duty-from-watch {path.name}; its probes kept the machine awake: an upper bound)")
    return Duty(hours, why)
