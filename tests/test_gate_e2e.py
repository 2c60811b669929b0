"""The browser gate must be able to fail: the journey's steps against a plain-HTML stub UI
(validation/testing/stub_ui.py), healthy (passes on the strict profile) and broken on purpose (a JavaScript
error on load, a failed request, a missing button, a result that never appears or comes late, a
wrong verdict): each fails naming its criterion. One Chromium for the module; ~1 s per test."""

from __future__ import annotations

import re

import pytest

from validation.e2e.browser import launch_options, why_no_browser
from validation.e2e.journey import Journey
from validation.testing import expect_failure, make_gate
from validation.testing.stub_ui import StubUI

pytestmark = pytest.mark.skipif(why_no_browser() is not None, reason=str(why_no_browser()))


@pytest.fixture(scope="module")
def stub_browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(**launch_options())
        yield b
        b.close()


def make_journey(browser, stub: StubUI, profile: str = "strict", **overrides) -> Journey:
    context = browser.new_context(base_url=stub.base_url)
    context.set_default_timeout(3000)
    page = context.new_page()
    return Journey(page, make_gate(profile, **overrides), shots_dir=None, ui_timeout=1.0)


def checked(step):
    """Run a step, then raise its soft failures (the gate's test would fail at its end)."""

    def run():
        step()
        step.__self__.gate.raise_pending()

    return run


def test_the_healthy_stub_passes_page_load_model_and_evaluation(stub_browser):
    with StubUI() as stub:
        j = make_journey(stub_browser, stub)
        j.open()
        j.load_model()
        j.evaluate()
        j.check_console("stub")
        j.gate.raise_pending()
    verdicts = {r.id: r.verdict for r in j.gate.recorder.results}
    assert set(verdicts.values()) == {"pass"}, verdicts
    assert {
        "e2e.page_load",
        "e2e.console_errors",
        "e2e.failed_requests",
        "e2e.model_load_time",
        "e2e.evaluate_time",
        "e2e.evaluate_verdicts",
    } <= set(verdicts)


def test_javascript_error_on_load(stub_browser):
    with StubUI({"js_error"}) as stub:
        j = make_journey(stub_browser, stub)
        e = expect_failure(checked(j.open), criterion="e2e.console_errors", measured="1")
    assert "undefinedGradioInit" in str(e)


def test_failed_request_on_load(stub_browser):
    with StubUI({"failed_request"}) as stub:
        j = make_journey(stub_browser, stub)
        e = expect_failure(checked(j.open), criterion="e2e.failed_requests", measured="1")
    assert "/static/missing.js -> 404" in str(e)


def test_missing_button(stub_browser):
    with StubUI({"no_eval_button"}) as stub:
        j = make_journey(stub_browser, stub)
        j.open()
        e = expect_failure(j.evaluate, criterion="e2e.evaluate_time", measured="—")
    assert "button 'Evaluate' not found" in str(e)


def test_result_that_never_appears(stub_browser):
    with StubUI({"eval_never_answers"}) as stub:
        j = make_journey(stub_browser, stub, e2e__evaluate_time=0.3)
        j.open()
        e = expect_failure(j.evaluate, criterion="e2e.evaluate_time")
    assert "no result within" in str(e) and "< 0.3 s" in str(e)


def test_model_status_that_never_says_ready(stub_browser):
    with StubUI({"no_ready"}) as stub:
        j = make_journey(stub_browser, stub, e2e__model_load_time=0.3)
        j.open()
        e = expect_failure(j.load_model, criterion="e2e.model_load_time")
    assert "button 'Load model'" in str(e) and "loading" in str(e)


def test_result_later_than_the_threshold(stub_browser):
    with StubUI({"eval_slow"}, slow=0.6) as stub:
        j = make_journey(stub_browser, stub, e2e__evaluate_time=0.3)
        j.open()
        expect_failure(checked(j.evaluate), criterion="e2e.evaluate_time")
    [late] = [r for r in j.gate.recorder.results if r.id == "e2e.evaluate_time"]
    assert 0.55 <= late.measured < 1.5, late


def test_wrong_verdict(stub_browser):
    with StubUI({"wrong_verdict"}) as stub:
        j = make_journey(stub_browser, stub)
        j.open()
        e = expect_failure(checked(j.evaluate), criterion="e2e.evaluate_verdicts", measured="no")
    assert "harm_prevention" not in str(e).split("harmful ->")[1].split(";")[0]


def test_a_page_load_broken_by_a_host_network_change_is_reloaded(stub_browser, monkeypatch):
    """Docker adding a veth makes Chromium drop requests (net::ERR_NETWORK_CHANGED): not the app's
    fault; the load is retried and the report says so. Simulated: the first status script aborts."""
    from validation.e2e import page as page_mod

    monkeypatch.setattr(page_mod, "NETWORK_CHANGED", re.compile(r"ERR_FAILED"))
    with StubUI({"status_by_script"}) as stub:
        j = make_journey(stub_browser, stub)
        calls = []

        def flaky(route):
            calls.append(route.request.url)
            route.abort("failed") if len(calls) == 1 else route.continue_()

        j.page.route("**/static/status.js", flaky)
        j.open()
        j.gate.raise_pending()
    assert len(calls) == 2
    [load] = [r for r in j.gate.recorder.results if r.id == "e2e.page_load"]
    assert load.verdict == "pass" and "after 1 reload(s)" in load.detail, load
    [failed] = [r for r in j.gate.recorder.results if r.id == "e2e.failed_requests"]
    assert failed.measured == 0 and "not counted: 1 requests" in failed.detail, failed


def test_a_step_broken_by_a_host_network_change_is_done_again_on_a_reloaded_page(stub_browser, monkeypatch):
    from validation.e2e import page as page_mod

    monkeypatch.setattr(page_mod, "NETWORK_CHANGED", re.compile(r"ERR_FAILED"))
    with StubUI({"eval_fetch"}) as stub:
        j = make_journey(stub_browser, stub, e2e__evaluate_time=0.5)
        j.open()
        calls = []

        def flaky(route):
            calls.append(route.request.url)
            route.abort("failed") if len(calls) == 1 else route.continue_()

        j.page.route("**/static/status.js", flaky)
        j.evaluate()
        j.gate.raise_pending()
    results = [r for r in j.gate.recorder.results if r.id == "e2e.evaluate_time"]
    assert [r.verdict for r in results] == ["pass"], results  # the broken attempt left nothing behind
    assert any("retried on a reloaded page" in n for s in j.steps for n in s.notes), [s.notes for s in j.steps]


def test_a_step_that_fails_without_a_network_change_is_not_retried(stub_browser):
    with StubUI({"eval_never_answers"}) as stub:
        j = make_journey(stub_browser, stub, e2e__evaluate_time=0.3)
        j.open()
        expect_failure(j.evaluate, criterion="e2e.evaluate_time")
    assert len([s for s in j.steps if s.name == "evaluate"]) == 1


def test_example_pickers_and_stop_pass_on_the_healthy_stub(stub_browser):
    with StubUI() as stub:
        j = make_journey(stub_browser, stub)
        j.open(record=False)
        checked(j.examples)()
        checked(j.stop)()
    assert {r.id: r.verdict for r in j.gate.recorder.results} == {"e2e.ui_examples": "pass", "e2e.generate_stop": "pass"}


@pytest.mark.parametrize("fault, step, criterion", [("example_ignored", "examples", "e2e.ui_examples"),
                                                     ("stop_ignored", "stop", "e2e.generate_stop"),
                                                     ("decoding_goes_on", "stop", "e2e.generate_stop")])
def test_a_control_without_its_effect(stub_browser, fault, step, criterion):
    with StubUI({fault}) as stub:
        j = make_journey(stub_browser, stub)
        j.open(record=False)
        expect_failure(checked(getattr(j, step)), criterion=criterion)
