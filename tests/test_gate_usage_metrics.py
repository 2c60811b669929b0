"""e2e.usage_metrics must be able to fail: the before/after /metrics check of the browser journey
(validation/checks/usage.py) against the stub app, whose /metrics counts what its routes do. The
journey's actions are the stub's JSON routes here (the browser's clicks reach the same counters in
the app); a metric that does not move, a mode other than the one clicked, or no /metrics fail it."""

from __future__ import annotations

from app import metrics as M
from validation import checks
from validation.checks.usage import INTERACTIVE
from validation.testing import client, expect_failure, make_gate
from validation.testing.stub_app import StubApp

CLICKED = {"rules": 2}  # the journey evaluates a harmful and a harmless text in rules mode
RISES = checks.journey_rises(CLICKED, "smoke")
EVALUATED = next(r for r in RISES if r.metric is M.EVALUATIONS)  # rules, by 2


def journey(http, mode: str = "rules", page_load: bool = True) -> None:
    if page_load:
        http.get("/")
    for text in ("pick the lock", "be kind"):
        http.post("/api/evaluate", json={"text": text, "mode": mode})
    http.post("/api/train", json={"preset": "smoke"})
    http.post("/api/generate", json={"prompt": "hi"})


def judged(http, gate, before):
    """Run the check, then raise its soft failure as the journey's test does at its end."""
    def run():
        checks.usage_metrics(http, gate, before, RISES)
        gate.raise_pending()
    return run


def short_of(gate) -> set[str]:
    """The samples the check found short (its measured list, names only)."""
    return {line.split(" ")[0] for line in gate.recorder.results[-1].measured}


def test_a_journey_that_moves_every_metric_passes():
    gate = make_gate("plan")
    with StubApp() as stub, client(stub.base_url) as http:
        before = checks.scrape(http)
        journey(http)
        judged(http, gate, before)()
    result = gate.recorder.results[-1]
    assert result.verdict == "pass" and f"{EVALUATED} +2" in result.detail, result


def test_a_generation_that_counts_no_tokens_fails_naming_the_serving_metrics():
    with StubApp(faults={"tokens_not_counted"}) as stub, client(stub.base_url) as http:
        before = checks.scrape(http)
        journey(http)
        gate = make_gate("plan")
        expect_failure(judged(http, gate, before), criterion="e2e.usage_metrics")
    serving = (M.GENERATED_TOKENS, M.FIRST_TOKEN_LATENCY, M.OUTPUT_TOKEN_LATENCY)
    assert short_of(gate) == {str(checks.Rise(m, INTERACTIVE)) for m in serving}


def test_no_session_started_and_evaluations_counted_under_another_mode_fail():
    with StubApp() as stub, client(stub.base_url) as http:
        before = checks.scrape(http)
        journey(http, mode="judge", page_load=False)
        gate = make_gate("plan")
        e = expect_failure(judged(http, gate, before), criterion="e2e.usage_metrics")
    assert short_of(gate) == {str(checks.Rise(M.SESSIONS_STARTED)), str(EVALUATED)}
    assert f"{EVALUATED} +0 (at least +2)" in str(e), e


def test_metrics_that_do_not_parse_fail_saying_so():
    with StubApp(faults={"bad_metrics"}) as stub, client(stub.base_url) as http:
        before = checks.scrape(http)
        journey(http)
        e = expect_failure(judged(http, make_gate("plan"), before), criterion="e2e.usage_metrics")
    assert "GET /metrics: " in str(e), e
