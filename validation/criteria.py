"""The criteria table (criteria.toml) and the comparison of a measured value against it.

Pure logic, no pytest, no I/O beyond reading the TOML file: unit-tested in tests/test_gate_logic.py.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CRITERIA_FILE = Path(__file__).with_name("criteria.toml")
# The criterion that times a training preset's run, start to succeeded (a preset without one is not timed).
TRAINING_TIME = {"smoke": "train.smoke_time", "quick": "train.quick_time"}
DIRECTIONS = ("max", "min", "eq", "ne", "in", "not_in", "contains")
PASS, FAIL, SKIP, NOT_RUN = "pass", "fail", "skip", "not run"


class CriteriaError(ValueError):
    """criteria.toml is malformed, or a check names a criterion or profile it does not have."""


@dataclass(frozen=True)
class Criterion:
    id: str
    description: str
    unit: str
    direction: str
    threshold: Any
    sessions: tuple[str, ...]
    targets: tuple[str, ...] = ()
    exclusive: bool = False
    source: str = ""

    def applies_to(self, target_kind: str) -> bool:
        return not self.targets or target_kind in self.targets

    @property
    def threshold_text(self) -> str:
        """The threshold as a person reads it: '< 30 s', '<= 1.5 GB', '= 200', 'not root'."""
        return threshold_text(self.direction, self.threshold, self.unit, self.exclusive)


@dataclass
class Criteria:
    """All criteria of one profile, thresholds resolved (inheritance applied)."""

    profile: str
    description: str
    items: dict[str, Criterion]
    params: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, cid: str) -> Criterion:
        try:
            return self.items[cid]
        except KeyError:
            raise CriteriaError(f"no criterion {cid!r} in {CRITERIA_FILE.name}") from None

    def __contains__(self, cid: str) -> bool:
        return cid in self.items

    def param(self, name: str) -> Any:
        """A profile parameter; every one has its value in criteria.toml, so a missing one is an error."""
        if name not in self.params:
            raise CriteriaError(f"profile {self.profile!r} has no parameter {name!r} "
                                "(validation/criteria.toml [profiles.<name>.params])")
        return self.params[name]


def _profile_chain(profiles: dict[str, dict], name: str) -> list[str]:
    chain, seen = [], set()
    while name:
        if name in seen:
            raise CriteriaError(f"profile inheritance loops at {name!r}")
        if name not in profiles:
            raise CriteriaError(f"no profile {name!r}; profiles: {', '.join(sorted(profiles))}")
        seen.add(name)
        chain.append(name)
        name = profiles[name].get("inherits", "")
    return chain


def load(profile: str = "plan", path: Path | str = CRITERIA_FILE) -> Criteria:
    """Read criteria.toml and resolve every threshold for `profile`."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    return from_dict(data, profile)


def from_dict(data: dict, profile: str = "plan") -> Criteria:
    profiles = data.get("profiles", {})
    chain = _profile_chain(profiles, profile)
    params: dict[str, Any] = {}
    for name in reversed(chain):
        params.update(profiles[name].get("params", {}))
    items = {}
    for cid, raw in data.get("criteria", {}).items():
        direction = raw.get("direction", "")
        if direction not in DIRECTIONS:
            raise CriteriaError(f"criterion {cid}: direction {direction!r} not in {DIRECTIONS}")
        thresholds = raw.get("threshold", {})
        if not isinstance(thresholds, dict):
            raise CriteriaError(f"criterion {cid}: threshold must be a table of profile = value")
        for p in [*chain, *thresholds]:
            if p not in profiles:
                raise CriteriaError(f"criterion {cid}: threshold for unknown profile {p!r}")
        value = next((thresholds[p] for p in chain if p in thresholds), None)
        if value is None:
            raise CriteriaError(f"criterion {cid}: no threshold for profile {profile!r} or what it inherits")
        sessions = raw.get("sessions", [])
        if not sessions:
            raise CriteriaError(f"criterion {cid}: no sessions")
        items[cid] = Criterion(
            id=cid,
            description=raw.get("description", cid),
            unit=raw.get("unit", ""),
            direction=direction,
            threshold=value,
            sessions=tuple(sessions),
            targets=tuple(raw.get("targets", ())),
            exclusive=bool(raw.get("exclusive", False)),
            source=raw.get("source", ""),
        )
    return Criteria(profile, profiles[profile].get("description", ""), items, params)


def profiles(path: Path | str = CRITERIA_FILE) -> list[str]:
    with open(path, "rb") as fh:
        return sorted(tomllib.load(fh).get("profiles", {}))


# ---------------------------------------------------------------------------------------------
# Comparison and formatting


def compare(criterion: Criterion, measured: Any) -> bool:
    """True when `measured` meets the criterion. A missing or NaN measurement never passes."""
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return False
    t, d = criterion.threshold, criterion.direction
    try:
        if d == "max":
            return measured < t if criterion.exclusive else measured <= t
        if d == "min":
            return measured > t if criterion.exclusive else measured >= t
        if d == "eq":
            if isinstance(t, list):
                return list(measured) == t
            if isinstance(t, bool) or isinstance(measured, bool):
                return isinstance(measured, bool) and measured is t
            return measured == t
        if d == "ne":
            return measured != t
        if d == "in":
            return measured in t
        if d == "not_in":
            return measured not in t
        if d == "contains":
            return t in measured
    except TypeError:
        return False
    raise CriteriaError(f"unknown direction {d!r}")


_SYMBOL = {"max": ("<=", "<"), "min": (">=", ">")}


def fmt_value(value: Any, unit: str = "") -> str:
    """A measured value or threshold as text, with its unit."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
        text = text.rstrip("0").rstrip(".") if "." in text else text
    else:
        text = str(value)
    if unit in ("", "bool", "text", "list", "status", "count"):
        return text if unit != "text" or text else '""'
    return f"{text} {unit}" if unit != "%" else f"{text} %"


def threshold_text(direction: str, threshold: Any, unit: str, exclusive: bool = False) -> str:
    if direction in _SYMBOL:
        return f"{_SYMBOL[direction][exclusive]} {fmt_value(threshold, unit)}"
    if direction == "eq":
        return f"= {fmt_value(threshold, unit)}"
    if direction == "ne":
        return f"!= {fmt_value(threshold, unit)}"
    if direction == "in":
        return f"one of {fmt_value(threshold)}"
    if direction == "not_in":
        return f"not {' / '.join(repr(v) if v == '' else str(v) for v in threshold)}"
    if direction == "contains":
        return f"includes {threshold}"
    return str(threshold)


def worst(criterion: Criterion, values: list[Any]) -> Any:
    """The worst of several measurements of one criterion (the one the verdict hangs on)."""
    numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if criterion.direction == "max" and len(numeric) == len(values):
        return max(numeric)
    if criterion.direction == "min" and len(numeric) == len(values):
        return min(numeric)
    failing = [v for v in values if not compare(criterion, v)]
    return failing[0] if failing else values[-1]
