"""The perf session's own options and fixtures (the gate's are in validation/plugin/).

pytest validation/perf [--target container|process|url] [--base-url URL] [--profile plan|strict|heavy|bench]
    [--load-requests N] [--load-users N] [--load-workers N] [--perf-train-preset smoke|quick|none]
    [--app-cpus N]
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest

from validation import api
from validation.perf.judge import NotThisApp, identify


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("perf", "performance gate (validation/perf)")
    g.addoption("--load-requests", type=int, default=None, help="request budget (default: profile's load_requests)")
    g.addoption("--load-users", type=int, default=None, help="concurrent users (default: profile's load_users)")
    g.addoption("--load-workers", type=int, default=None, help="locust workers; 0 = one process (profile's load_workers)")
    g.addoption(
        "--perf-train-preset",
        default=None,
        help="preset trained while the load runs: smoke | quick | standard | none (profile's perf_train_preset)",
    )
    g.addoption(
        "--app-cpus",
        type=float,
        default=None,
        help="cores the app may use, for CPU %% on a url target (default: this machine's for a loopback URL, else 1)",
    )


def _opt(config: pytest.Config, name: str):
    return config.getoption(name, None)


@pytest.fixture(scope="session")
def perf_params(pytestconfig: pytest.Config, criteria) -> dict:
    """The load profile: criteria.toml's parameters (each has its value there), overridden by the command line."""

    def pick(opt: str, key: str):
        v = _opt(pytestconfig, opt)
        return v if v is not None else criteria.param(key)

    preset = pick("--perf-train-preset", "perf_train_preset")
    return {
        "profile": criteria.profile,
        "model": criteria.param("model"),
        "budget": int(pick("--load-requests", "load_requests")),
        "generations": int(criteria.param("load_generations")),
        "users": int(pick("--load-users", "load_users")),
        "workers": int(pick("--load-workers", "load_workers")),
        "spawn_rate": float(criteria.param("load_spawn_rate")),
        "max_seconds": float(criteria.param("load_max_seconds")),
        "think_scale": float(criteria.param("load_think_scale")),
        "gen_tokens": int(criteria.param("generate_max_new_tokens")),
        "train_preset": None if preset in ("none", "", None) else preset,
        "benchmark": bool(criteria.param("perf_benchmark")),
    }


@pytest.fixture(scope="session")
def app_cpus(pytestconfig: pytest.Config, target) -> float:
    v = _opt(pytestconfig, "--app-cpus")
    if v:
        return float(v)
    host = urlparse(target.base_url).hostname or ""
    return float(os.cpu_count() or 1) if host in ("127.0.0.1", "localhost", "::1") else 1.0


@pytest.fixture(scope="session")
def subject(target, auth, recorder) -> dict:
    """The target, checked to be this app before any load is sent (two GETs). On a URL that is not
    the CAI demo the whole session stops here: no load, exit status 4, the reason printed."""
    try:
        info = identify(target.base_url, auth=auth)
    except NotThisApp as exc:
        recorder.note(str(exc))
        pytest.exit(str(exc), returncode=4)
    return {"auth": auth, **info}


@pytest.fixture(scope="session")
def perf_ready(subject, target, gate_config) -> dict:
    """GET /ready 200 (the default model loaded), waited for up to --health-timeout seconds: perf does not
    gate start-up time (smoke does), and a busy machine can take a while."""


    sent = {"n": 0}

    def count(_request) -> None:
        sent["n"] += 1

    hooks = {"request": [count]}
    with api.Client(base_url=target.base_url, auth=subject["auth"], timeout=10, event_hooks=hooks) as http:
        st = api.wait_ready(http, timeout=gate_config.health_timeout, interval=0.5)
    st["requests"] = sent["n"]
    if not st["ok"]:
        pytest.fail(f"the app never became ready (GET /ready: {st['last']})", pytrace=False)
    return st
