"""Helpers for the gate's self-tests (tests/test_gate_*.py) and later sessions' own: a Gate on a profile
with some thresholds overridden, and an assertion that a check fails naming its criterion."""

from __future__ import annotations

import tomllib

import httpx
import pytest

from validation import criteria as criteria_mod
from validation.gate import CriterionFailed, Gate, Recorder


def make_gate(profile: str = "strict", target_kind: str = "", **overrides) -> Gate:
    """A fresh Gate (own Recorder) on `profile`; overrides: criterion id with dots as '__'."""
    with open(criteria_mod.CRITERIA_FILE, "rb") as fh:
        data = tomllib.load(fh)
    for key, value in overrides.items():
        data["criteria"][key.replace("__", ".")]["threshold"][profile] = value
    return Recorder(criteria_mod.from_dict(data, profile), target_kind, "selftest").gate("selftest")


def expect_failure(fn, *args, criterion: str, measured: str | None = None, **kwargs) -> CriterionFailed:
    """Run a check; assert it fails naming `criterion` (and the measured value text, if given)."""
    with pytest.raises(CriterionFailed) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert f"[{criterion}] FAILED" in msg, msg
    assert "measured" in msg and "threshold" in msg, msg
    if measured is not None:
        assert f"measured {measured}" in msg, msg
    return info.value


def client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=10)
