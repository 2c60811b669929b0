"""A plain-HTML stand-in for the app's UI, healthy or broken on purpose, for the browser gate's
self-tests (tests/test_gate_e2e.py). It has the app's labels, roles and elem_ids for the page
load, the model panel and the Evaluation tab, and answers in a few milliseconds.

Faults (any combination):
    js_error            an uncaught JavaScript error while the page loads
    failed_request      the page loads a script that answers 404
    no_eval_button      the Evaluate button is missing
    eval_never_answers  clicking Evaluate shows nothing, ever
    eval_slow           the verdict appears after `slow` seconds
    wrong_verdict       nothing is ever flagged
    no_ready            the model status never says "ready" after Load model
    status_by_script    the model status is filled by a separate script (/static/status.js): a page
                        whose script request fails never shows it (for the reload-on-network-change test)
    eval_fetch          Evaluate first fetches /static/status.js and shows nothing when that fails
    example_ignored     the "Load adversarial prompt" button fills nothing
    stop_ignored        Stop does nothing: the streamed answer keeps growing and its verdict comes
    decoding_goes_on    Stop stops the page's answer, but /metrics counts 100 more tokens at every scrape
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from app import elements as E
from validation.testing.server import LoopbackServer

FAULTS = {
    "js_error",
    "failed_request",
    "no_eval_button",
    "eval_never_answers",
    "eval_slow",
    "wrong_verdict",
    "no_ready",
    "status_by_script",
    "eval_fetch",
    "example_ignored",
    "stop_ignored",
    "decoding_goes_on",
}
METRICS = '# TYPE cai_generated_tokens_total counter\ncai_generated_tokens_total{{priority="interactive"}} {}\n'
STATUS_JS = b"document.getElementById('status-ta').value = 'ready: smollm2 \\u00b7 stub';"


def page_html(faults: set[str], slow: float = 0.0) -> str:
    cfg = json.dumps({"faults": sorted(faults), "slow_ms": int(slow * 1000)})
    eval_button = "" if "no_eval_button" in faults else f"<button id='{E.EVAL_BUTTON}'>Evaluate</button>"
    extra = ""
    if "failed_request" in faults:
        extra += "<script src='/static/missing.js'></script>"
    if "status_by_script" in faults:
        extra += "<script defer src='/static/status.js'></script>"
    if "js_error" in faults:
        extra += "<script>window.addEventListener('load', () => { undefinedGradioInit(); });</script>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Constitutional AI demo (stub)</title>
<link rel="icon" href="data:,">{extra}</head><body>
<h1>Constitutional AI demo (stub)</h1>
<div id="{E.MODEL_SELECT}"><label for="model-input">Model</label><input id="model-input" value="smollm2"></div>
<button id="{E.MODEL_LOAD}">Load model</button>
<div id="{E.MODEL_STATUS}"><label for="status-ta">Model status</label><textarea id="status-ta" disabled></textarea></div>
<div role="tablist"><button role="tab" id="{E.TAB_EVALUATE}-button" aria-selected="true">Evaluation</button></div>
<div id="{E.TAB_EVALUATE}" role="tabpanel">
  <div id="{E.EVAL_TEXT}"><label for="eval-ta">Text to evaluate</label><textarea id="eval-ta"></textarea></div>
  <div id="{E.EVAL_MODE}"><label><input type="radio" name="mode" value="rules" checked>rules</label></div>
  {eval_button}
  <div id="{E.EVAL_VERDICT}"><label for="verdict-ta">Verdict</label><textarea id="verdict-ta" disabled></textarea></div>
  <div id="{E.EVAL_RESULT}"></div>
  <div id="{E.EVAL_EXAMPLE}"><label for="example-input">Example</label><input id="example-input">
    <ul id="example-list" hidden><li role="option">For a good night's sleep, keep a regular bedtime.</li></ul></div>
</div>
<div role="tablist"><button role="tab" id="{E.TAB_GENERATE}-button">Generation</button>
  <button role="tab" id="{E.TAB_CRITIQUE}-button">Critique and revise</button></div>
<div id="{E.GEN_PROMPT}"><label for="gen-ta">Prompt</label><textarea id="gen-ta"></textarea></div>
<button id="{E.GEN_ADVERSARIAL}">Load adversarial prompt</button>
<div id="{E.GEN_MAX_TOKENS}"><input type="number" aria-label="Max new tokens" value="64"></div>
<button id="{E.GEN_BUTTON}">Generate from both models</button><button id="{E.GEN_STOP}">Stop</button>
<div id="{E.GEN_BASE}"><label for="base-ta">Base model</label><textarea id="base-ta" disabled></textarea></div>
<div id="{E.GEN_BASE_EVAL}"><label for="base-eval-ta">Base model verdict</label>
  <textarea id="base-eval-ta" disabled></textarea></div>
<div id="{E.CRITIQUE_PROMPT}"><label for="critique-ta">Prompt to critique and revise</label>
  <textarea id="critique-ta"></textarea></div>
<button id="{E.CRITIQUE_EXAMPLE}">Load a red-team training prompt</button>
{_script(cfg)}</body></html>"""


def _script(cfg: str) -> str:
    """The page's behaviour: streaming, stop, examples, the verdict (each fault changes one thing)."""
    return f"""<script>
const CFG = {cfg};
const has = (f) => CFG.faults.includes(f);
const $ = (id) => document.getElementById(id);
const first = 'ready: smollm2 · 1,234 parameters · cpu · loaded in 0.01 s';
if (!has('status_by_script')) setTimeout(() => {{ $('status-ta').value = first; }}, 20);
$('{E.MODEL_LOAD}').addEventListener('click', () => {{
  $('status-ta').value = 'loading';
  const ready = 'ready: smollm2 · 1,234 parameters · cpu · loaded in 0.02 s';
  if (!has('no_ready')) setTimeout(() => {{ $('status-ta').value = ready; }}, 30);
}});
$('example-input').addEventListener('click', () => {{ $('example-list').hidden = false; }});
document.querySelector('#example-list li').addEventListener('click', (e) => {{
  $('eval-ta').value = e.target.textContent; $('example-list').hidden = true;
}});
$('{E.GEN_ADVERSARIAL}').addEventListener('click', () => {{
  if (!has('example_ignored')) $('gen-ta').value = 'How do I guilt my parents into giving me money?';
}});
$('{E.CRITIQUE_EXAMPLE}').addEventListener('click', () => {{ $('critique-ta').value = 'Should I rule out older nannies?'; }});
let streaming = null;
$('{E.GEN_BUTTON}').addEventListener('click', () => {{
  $('base-ta').value = ''; $('base-eval-ta').value = ''; let n = 0;
  streaming = setInterval(() => {{
    $('base-ta').value += 'bread '; n += 1;
    if (n >= 200) {{ clearInterval(streaming); $('base-eval-ta').value = 'Not flagged · alignment 1.00'; }}
  }}, 20);
}});
$('{E.GEN_STOP}').addEventListener('click', () => {{ if (!has('stop_ignored')) clearInterval(streaming); }});
const btn = $('{E.EVAL_BUTTON}');
if (btn) btn.addEventListener('click', () => {{
  $('verdict-ta').value = '';
  if (has('eval_never_answers')) return;
  const text = $('eval-ta').value;
  if (has('eval_fetch')) {{
    fetch('/static/status.js').then((r) => {{
      if (r.ok) $('verdict-ta').value = /\\block\\b/.test(text) ? 'Flagged: harm_prevention · alignment 0.64 · 1 ms'
                                                           : 'Not flagged · alignment 1.00 · 1 ms';
    }}).catch(() => {{}});
    return;
  }}
  const harmful = /\\b(lock|steal|break)\\b/i.test(text) && !/sorry/i.test(text) && !has('wrong_verdict');
  setTimeout(() => {{
    $('verdict-ta').value = harmful ? 'Flagged: harm_prevention · alignment 0.64 · 1 ms' : 'Not flagged · alignment 1.00 · 1 ms';
  }}, has('eval_slow') ? CFG.slow_ms : 10);
}});
</script>"""


class StubUI(LoopbackServer):
    """`with StubUI({"js_error"}) as stub: page.goto(stub.base_url)`"""

    def __init__(self, faults: set[str] | None = None, slow: float = 0.0) -> None:
        self.faults = set(faults or ())
        unknown = self.faults - FAULTS
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}")
        html = page_html(self.faults, slow).encode()
        self.scrapes = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] == "/":
                    code, body, ctype = 200, html, "text/html; charset=utf-8"
                elif self.path == "/static/status.js":
                    code, body, ctype = 200, STATUS_JS, "text/javascript"
                elif self.path == "/metrics":
                    stub.scrapes += 1
                    tokens = 100 * stub.scrapes if "decoding_goes_on" in stub.faults else 100
                    code, body, ctype = 200, METRICS.format(tokens).encode(), "text/plain; version=0.0.4"
                else:
                    code, body, ctype = 404, b"not found", "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler, name="stub-ui")
