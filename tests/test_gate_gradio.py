"""gradio_api.evaluate must be able to fail: a real Gradio app (in this process) whose evaluate
endpoint shows a verdict, checked against the JSON API's answer for the same text. A UI that says
"Not flagged" (or names other principles) while the API flags the text fails the check; cards that
list every principle by name do not make a wrong verdict pass."""

from __future__ import annotations

import pytest

from validation import checks
from validation.testing import expect_failure, make_gate

API_ANSWER = {"flagged": True, "flagged_principles": ["harm_prevention"]}
CARDS = "<div>harm_prevention ok</div><div>truthfulness ok</div><div>autonomy_respect ok</div>"


@pytest.fixture
def gradio_app():
    import gradio as gr

    apps = []

    def serve(verdict: str) -> str:
        with gr.Blocks() as demo:
            text, mode = gr.Textbox(), gr.Radio(["rules", "judge"], value="rules")
            out, cards = gr.Textbox(), gr.HTML()
            gr.Button().click(lambda _t, _m: (verdict, CARDS), [text, mode], [out, cards], api_name="evaluate")
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        apps.append(demo)
        return url.rstrip("/")

    yield serve
    for demo in apps:
        demo.close()


def _check(base_url: str) -> None:
    gate = make_gate("plan")
    checks.gradio_evaluate(base_url, gate, "evaluate", API_ANSWER)
    gate.raise_pending()


def test_a_ui_verdict_that_matches_the_api_passes(gradio_app):
    _check(gradio_app("Flagged: harm_prevention · alignment 0.41 · 2 ms"))


@pytest.mark.parametrize("verdict", [
    "Not flagged · alignment 0.95 · 2 ms",  # the UI contradicts the API (the cards still name every principle)
    "Flagged: truthfulness · alignment 0.41 · 2 ms",  # another principle
    "",  # no verdict at all
])
def test_a_ui_verdict_the_api_contradicts_fails(gradio_app, verdict):
    expect_failure(_check, gradio_app(verdict), criterion="gradio_api.evaluate")
