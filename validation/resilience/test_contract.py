"""The HTTP contract: schemathesis fuzzes the running app against its own /api/openapi.json.

On container and process targets the gate starts an app of its own, so the stateful phase may train
and load models without touching the session's app, with small text and token limits so the run
fits CI (the schema carries the limits, so they are fuzzed too). On the url target: the deployed
app itself, as configured (pass --basic-auth when it has auth on).
"""

from __future__ import annotations

import pytest

from validation.gate import CLOCK
from validation.plugin import state
from validation.resilience import contract
from validation.resilience.apps import wait_ready

pytestmark = pytest.mark.resilience

FUZZ_ENV = {"MAX_NEW_TOKENS_LIMIT": "8", "MAX_TEXT_CHARS": "400"}


def test_http_contract(gate, apps, target_kind, request, auth, say, pytestconfig):
    if target_kind == "url":
        app, creds = request.getfixturevalue("target"), auth
    else:
        app, creds = apps.app(FUZZ_ENV), None
    wait_ready(app.base_url, auth=creds)
    with CLOCK.spent("app"):  # waiting on the app's answers, not the gate's own time
        result = contract.fuzz(app.base_url, state(pytestconfig).report_dir / "schemathesis", auth=creds, say=say)
    for what, path in result.reports.items():
        gate.attach(path, f"schemathesis {what}")
    say(f"schemathesis: {result.operations} operations, {result.cases} cases, {len(result.failures)} failures, "
        f"{result.seconds:.0f} s")
    contract.record(gate, result)
