"""The user's journey through the app in a browser, step by step, measured as the user sees it.

    journey = Journey(page, gate, shots_dir=report_dir / "screens")
    journey.open()            # page loads: no console errors, no failed requests   (e2e.page_load, ...)
    journey.load_model()      # model panel -> status "ready"                         (e2e.model_load_time)
    journey.evaluate()        # a harmful and a harmless text, right principles       (e2e.evaluate_time, ...)
    journey.train()           # profile's preset, progress advances, checkpoint named  (e2e.train_time, ...)
    journey.generate()        # base vs trained side by side, both with a verdict      (e2e.generate_time, ...)
    journey.impact()          # impact tab runs, JSON/CSV downloads parse              (e2e.impact_time, ...)

Every step: find its controls by label/role first, the app's elem_id (app/elements.py) second;
click; wait on states, never sleep (the wait's budget is the criterion's threshold plus a little);
record click -> visible result into the gate next to the threshold; take a screenshot into the
report dir and link it from report.md. A control that is not there or a result that never
appears fails the step's criterion with a message naming it (tests/test_gate_e2e.py).

The same class drives the gate (validation/e2e/test_journey.py), the demo walkthrough (nox -s demo)
and the gate-sensitivity tests against a broken stub UI (validation/e2e/stub_ui.py).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

from app import elements as E
from validation.checks import HARMFUL_TEXT, HARMLESS_TEXT
from validation.gate import CLOCK, CriterionFailed, Gate, Result

GEN_PROMPT = "How do I pick the lock on my neighbour's front door?"
# How often the browser checks that an event ended: every 50 ms, not every animation frame, which
# kept a core of this 2-core machine busy in Chromium while the app under test needed it.
POLL_MS = 50
VERDICT = re.compile(r"^(Flagged|Not flagged)\b")
CRITIQUE_PROMPT = "Write a message that pressures my friend into lending me money today."
TRACE_PARTS = ("Answer:", "Critique:", "Revision:")  # each followed by text in the trace shown
FINAL_TRAIN_STATE = re.compile(r"^(succeeded|failed|cancelled)\b")
PROGRESS_VISIBLE_AFTER_S = 3.0  # training shorter than this may show no value between 0 and 100 %

# What counts as a failed request: an HTTP status >= 400, or a network error (refused, reset, timed
# out, ...). Not counted, but listed in the detail: requests the page itself cancelled
# (net::ERR_ABORTED: Gradio closes its own event streams once it has its result, a lazy chunk is
# dropped when the page moves on) and requests Chromium dropped because the test host's network
# interfaces changed (net::ERR_NETWORK_CHANGED: Docker adding or removing a container's veth) —
# that is the host, not the app. A page load that a network change breaks is reloaded (at most twice).
IGNORED_CONSOLE: tuple[re.Pattern, ...] = ()
CANCELLED = re.compile(r"ERR_ABORTED")
NETWORK_CHANGED = re.compile(r"ERR_NETWORK_CHANGED")
MAX_RELOADS = 2

# A MutationObserver on the output blocks, installed *before* the click: Gradio shows a status
# tracker (data-testid="status-tracker", class "hide" when idle) on every output of a running
# event. `done` = it was seen busy and is idle again, so a result that happens to equal the old
# text (a second "ready: tiny") still counts only once the event has finished. Blocks without a
# tracker (a plain HTML page) are judged by their text alone.
_WATCH_BUSY = """(els) => {
  const st = {busy: false, done: false, trackers: 0};
  const TRACKER = '[data-testid="status-tracker"]';
  const hidden = (t) => t.classList.contains('hide');
  const check = (records) => {
    for (const r of records || []) {
      if (r.type === 'attributes' && r.target.matches && r.target.matches(TRACKER)
          && !(r.oldValue || '').split(/\\s+/).includes('hide')) st.busy = true;
    }
    let anyBusy = false, n = 0;
    for (const el of els) for (const t of el.querySelectorAll(TRACKER)) { n++; if (!hidden(t)) anyBusy = true; }
    st.trackers = n;
    if (anyBusy) st.busy = true;
    st.done = st.busy && !anyBusy;
  };
  for (const el of els) new MutationObserver(check).observe(el, {subtree: true, childList: true,
      attributes: true, attributeFilter: ['class'], attributeOldValue: true});
  check();
  const key = 'w' + Math.random().toString(36).slice(2);
  (window.__gateBusy = window.__gateBusy || {})[key] = st;
  return {key: key, trackers: st.trackers};
}"""

_ALL_IDLE = """() => [...document.querySelectorAll('[data-testid="status-tracker"]')]
  .every((t) => t.classList.contains('hide'))"""

# Progress values of the training job as the page shows them (the <progress> is re-rendered on
# every timer tick), with the status line at that moment.
_WATCH_PROGRESS = """([el, statusSel]) => {
  const seen = [];
  let armed = false;  // the page shows the last job until the new one appears: start at queued/running
  const rec = () => {
    const p = el.querySelector('progress');
    const s = document.querySelector(statusSel);
    const status = s ? (s.value || s.textContent || '') : '';
    if (/^(queued|running)\\b/.test(status)) armed = true;
    if (!p || !armed) return;
    const v = Number(p.getAttribute('value'));
    const last = seen[seen.length - 1];
    if (!last || last.value !== v) seen.push({value: v, status: status.slice(0, 80), t: performance.now()});
  };
  new MutationObserver(rec).observe(el, {subtree: true, childList: true, attributes: true, characterData: true});
  window.__gateProgress = seen;
  return true;
}"""


class _NetworkChanged(Exception):
    """The page load lost requests to a change of the host's network: reload."""


def _retry_on_network_change(step):
    """A step that failed while Chromium dropped requests because the host's network changed is done
    again on a reloaded page (at most MAX_RELOADS times); nothing of the failed attempt is recorded."""

    @functools.wraps(step)
    def wrapper(self: Journey, *args: Any, **kwargs: Any):
        if self._retry_mark is not None:  # nested (train inside ensure_trained): the outer step retries
            return step(self, *args, **kwargs)
        try:
            for attempt in range(MAX_RELOADS + 1):
                self._retry_mark = len(self.watch.network_changed) if attempt < MAX_RELOADS else None
                try:
                    return step(self, *args, **kwargs)
                except _NetworkChanged as exc:
                    if self.steps:
                        self.steps[-1].notes.append(f"retried on a reloaded page: the host's network changed ({exc})"[:300])
                    self._retry_mark = None
                    self.open(record=False)
        finally:
            self._retry_mark = None

    return wrapper


class StepFailed(CriterionFailed):
    """A step could not complete (control missing, result never shown); names its criterion."""


@dataclass
class Step:
    name: str
    title: str
    seconds: float | None = None
    ok: bool = True
    screenshot: Path | None = None
    notes: list[str] = field(default_factory=list)
    criterion: str = ""  # the step's time criterion, its threshold and whether the time met it
    threshold: str = ""
    within: bool | None = None


class PageWatch:
    """Console errors, uncaught page errors and failed requests of one page, as the browser saw them."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.network_changed: list[str] = []
        self.cancelled: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._pageerror)
        page.on("requestfailed", self._requestfailed)
        page.on("response", self._response)

    def _console(self, msg: Any) -> None:
        if msg.type != "error" or any(p.search(msg.text) for p in IGNORED_CONSOLE):
            return
        if msg.text.startswith("Failed to load resource") and NETWORK_CHANGED.search(msg.text):
            return  # the console's copy of a request the host's network change dropped (listed apart)
        loc = msg.location or {}
        where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
        self.errors.append(f"console.error: {msg.text[:300]}{where}")

    def _pageerror(self, exc: Any) -> None:
        self.errors.append(f"uncaught: {str(exc)[:300]}")

    def _requestfailed(self, request: Any) -> None:
        failure = str(request.failure or "")
        if NETWORK_CHANGED.search(failure):
            self.network_changed.append(f"{request.method} {request.url} failed: {failure}")
        elif CANCELLED.search(failure):
            self.cancelled.append(f"{request.method} {request.url}")
        else:
            self.failed.append(f"{request.method} {request.url} failed: {failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.request.method} {response.url} -> {response.status}")

    def mark(self) -> tuple[int, int]:
        return len(self.errors), len(self.failed)

    def since(self, mark: tuple[int, int] = (0, 0)) -> tuple[list[str], list[str]]:
        return self.errors[mark[0] :], self.failed[mark[1] :]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3])[:300] if text else type(exc).__name__


class Journey:
    def __init__(
        self,
        page: Page,
        gate: Gate,
        shots_dir: Path | None = None,
        *,
        model: str | None = None,
        preset: str | None = None,
        ui_timeout: float = 15.0,
        prefix: str = "",
        record: bool = True,
        grace: float = 3.0,
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        self.page = page
        self.gate = gate
        self.shots_dir = shots_dir
        self.model = model or str(gate.param("model", "smollm2"))
        self.preset = preset or str(gate.param("train_preset", "smoke"))
        self.ui_timeout = ui_timeout
        self.prefix = prefix
        self.record = record
        self.grace = grace
        self.on_step = on_step
        self.watch = PageWatch(page)
        self.steps: list[Step] = []
        self.run_id: str | None = None
        self.checkpoint: str | None = None
        self._shot_n = 0
        self._retry_mark: int | None = None  # network_changed count when the current step began (None: no retry left)

    # ---- locators: labels and roles first, the app's elem_ids second ----------------------------

    def textbox(self, label: str, elem_id: str) -> Locator:
        return self.page.get_by_label(label, exact=True).or_(self.page.locator(f"#{elem_id} textarea, #{elem_id} input"))

    def button(self, name: str, elem_id: str) -> Locator:
        return self.page.get_by_role("button", name=name, exact=True).or_(self.page.locator(f"button#{elem_id}"))

    def tab(self, name: str, elem_id: str) -> Locator:
        return self.page.get_by_role("tab", name=name, exact=True).or_(self.page.locator(f"#{elem_id}-button"))

    def block(self, elem_id: str) -> Locator:
        return self.page.locator(f"#{elem_id}")

    # ---- recording -------------------------------------------------------------------------------

    def _budget(self, cid: str) -> float:
        """Seconds to wait for a step's result: well past its threshold, so that a late result is
        measured (and fails its criterion with the real time) while one that never comes still ends
        the wait: threshold + min(3 x threshold, 60 s)."""
        t = float(self.gate.threshold(cid))
        return t + min(self.grace * t, 60.0)

    def _fail(self, cid: str, measured: Any, detail: str) -> None:
        if self._retry_mark is not None and len(self.watch.network_changed) > self._retry_mark:
            raise _NetworkChanged(detail)  # the host dropped the page's requests: reload, do the step again
        if self.watch.network_changed:
            detail += (
                f" [the test host's network changed during the test: {len(self.watch.network_changed)} requests "
                f"dropped by the browser with net::ERR_NETWORK_CHANGED, e.g. {self.watch.network_changed[-1][:120]}]"
            )
        if not self.record:
            raise StepFailed(
                [
                    Result(
                        cid,
                        "fail",
                        measured,
                        None,
                        self.gate.criterion(cid).threshold_text,
                        self.gate.criterion(cid).unit,
                        self.gate.criterion(cid).description,
                        detail,
                    )
                ]
            )
        self.gate.fail(cid, measured, detail)

    def _measure(self, cid: str, value: Any, detail: str = "") -> None:
        if self.record:
            result = self.gate.measure(cid, value, detail=detail, soft=True)
            st = self.steps[-1] if self.steps else None
            if st is not None and self.gate.criterion(cid).unit == "s" and not st.criterion:
                st.criterion, st.threshold, st.within = cid, result.threshold_text, result.verdict == "pass"

    def _control(self, cid: str, what: str, loc: Locator) -> Locator:
        """The control, visible; else the step's criterion fails naming the control."""
        try:
            expect(loc).to_be_visible(timeout=self.ui_timeout * 1000)
        except (AssertionError, PlaywrightError) as exc:
            self._fail(cid, None, f"{what} not found on the page within {self.ui_timeout:.0f} s: {_first_line(exc)}")
        return loc

    def screenshot(self, name: str, title: str) -> Path | None:
        if self.shots_dir is None or not self.record:
            return None
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        self._shot_n += 1
        path = self.shots_dir / f"{self._shot_n:02d}-{name}.png"
        try:
            self.page.screenshot(path=str(path), full_page=True)
        except PlaywrightError:
            return None
        if self.record:
            self.gate.attach(path, f"screenshot: {self.prefix}{title}")
        return path

    @contextlib.contextmanager
    def step(self, name: str, title: str):
        st = Step(name, title)
        self.steps.append(st)
        try:
            yield st
        except BaseException:
            st.ok = False
            raise
        finally:
            st.screenshot = self.screenshot(name, title if st.ok else f"{title} (FAILED)")
            if self.on_step:
                self.on_step(st)

    def _act(
        self,
        cid: str,
        what: str,
        button: Locator,
        outputs: list[str],
        until: Callable[[float], None],
        budget: float | None = None,
    ) -> float:
        """Click `button`, wait until its event finished on `outputs` (elem_ids) and `until(timeout_ms)`
        holds; return the seconds from click to visible result. Fails `cid` when it never shows."""
        budget = budget if budget is not None else self._budget(cid)
        self._control(cid, what, button)
        try:
            blocks = [self.block(o).element_handle(timeout=self.ui_timeout * 1000) for o in outputs]
            watch = self.page.evaluate(_WATCH_BUSY, blocks)
        except PlaywrightError as exc:
            self._fail(cid, None, f"{what}: output block not found ({', '.join(outputs)}): {_first_line(exc)}")
        t0 = time.perf_counter()
        try:
            with CLOCK.spent("app"):
                button.click(timeout=self.ui_timeout * 1000)
                if watch["trackers"]:
                    self.page.wait_for_function(
                        "k => window.__gateBusy[k].done", arg=watch["key"], timeout=budget * 1000, polling=POLL_MS
                    )
                left = max(budget - (time.perf_counter() - t0), 0.5)
                until(left * 1000)
        except (AssertionError, PlaywrightError) as exc:
            elapsed = time.perf_counter() - t0
            self._fail(
                cid,
                round(elapsed, 2),
                f"{what}: no result within {elapsed:.1f} s of the click (threshold "
                f"{self.gate.criterion(cid).threshold_text}, waited {budget:.1f} s): {_first_line(exc)}",
            )
        return time.perf_counter() - t0

    def _open_tab(self, cid: str, name: str, elem_id: str) -> None:
        self._control(cid, f"tab '{name}' (#{elem_id})", self.tab(name, elem_id)).click()

    # ---- the steps -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def unrecorded(self):
        """Steps run as a prerequisite (e.g. training before generation when run alone): not measured."""
        old, self.record = self.record, False
        try:
            yield self
        finally:
            self.record = old

    def open(self, path: str = "/", record: bool | None = None) -> float:
        """Page loads, the app renders and its on-load event settles; no console errors, no failed requests."""
        if record is False and self.record:
            with self.unrecorded():
                return self.open(path)
        cid = "e2e.page_load"
        with self.step("page-load", "page loaded") as st:
            status = self.textbox("Model status", E.MODEL_STATUS)
            t_first = t0 = time.perf_counter()
            reloads = 0
            while True:
                dropped = len(self.watch.network_changed)
                try:
                    with CLOCK.spent("app"):
                        self._load_page(path, status, t0, self._budget(cid), dropped)
                    break
                except _NetworkChanged:
                    reloads += 1
                    t0 = time.perf_counter()
                    st.notes.append(
                        f"reloaded: the host's network changed during the load ({self.watch.network_changed[-1][:100]})"
                    )
                except (AssertionError, PlaywrightError) as exc:
                    self._fail(
                        cid, round(time.perf_counter() - t0, 2), f"the app did not render its model status: {_first_line(exc)}"
                    )
            st.seconds = time.perf_counter() - t0
            with contextlib.suppress(PlaywrightError):  # let late console errors and requests land
                self.page.wait_for_load_state("networkidle", timeout=3000)
            st.notes.append(f"model status: {status.input_value()}")
            detail = f"GET {path} -> app rendered, on-load event done"
            if reloads:
                detail += (
                    f"; after {reloads} reload(s): the host's network changed (net::ERR_NETWORK_CHANGED), "
                    f"{time.perf_counter() - t_first:.1f} s in all"
                )
            self._measure(cid, round(st.seconds, 3), detail=detail)
            self.check_console(f"page load of {path}")
        return st.seconds

    def _load_page(self, path: str, status: Locator, t0: float, budget: float, dropped: int) -> None:
        """goto, then wait (in 1 s slices) until the model status shows and every event is idle;
        raise _NetworkChanged when the browser dropped requests because the host's network changed."""
        reloads_left = MAX_RELOADS - sum(1 for n in self.steps[-1].notes if n.startswith("reloaded"))

        def network_changed() -> bool:
            return reloads_left > 0 and len(self.watch.network_changed) > dropped

        self.page.goto(path, timeout=budget * 1000)
        for check in (
            lambda ms: expect(status).not_to_have_value("", timeout=ms),
            lambda ms: self.page.wait_for_function(_ALL_IDLE, timeout=ms, polling=POLL_MS),
        ):
            while True:
                left = budget - (time.perf_counter() - t0)
                try:
                    check(max(min(left, 1.0), 0.1) * 1000)
                    break
                except (AssertionError, PlaywrightError):
                    if network_changed():
                        raise _NetworkChanged() from None
                    if left <= 1.0:
                        raise

    def has_trained_model(self) -> bool:
        """The model status names a trained run (the app has one to compare with)."""
        try:
            return "trained run" in self.textbox("Model status", E.MODEL_STATUS).input_value(timeout=self.ui_timeout * 1000)
        except PlaywrightError:
            return False

    def ensure_trained(self) -> None:
        """Prerequisite of generation and impact when run alone: train (unmeasured) unless the app has a trained model."""
        if not self.has_trained_model():
            with self.unrecorded():
                self.train()

    def check_console(self, during: str, mark: tuple[int, int] = (0, 0)) -> None:
        errors, failed = self.watch.since(mark)
        if self.watch.network_changed:
            during += (
                f" (not counted: {len(self.watch.network_changed)} requests dropped by the browser because the "
                "test host's network changed, net::ERR_NETWORK_CHANGED)"
            )
        self._measure("e2e.console_errors", len(errors), detail=f"{during}" + (f": {' | '.join(errors[:3])}" if errors else ""))
        self._measure("e2e.failed_requests", len(failed), detail=f"{during}" + (f": {' | '.join(failed[:3])}" if failed else ""))

    @_retry_on_network_change
    def load_model(self) -> float:
        cid = "e2e.model_load_time"
        with self.step("model-load", f"model {self.model} loaded") as st:
            select = self.page.get_by_label("Model", exact=True).or_(self.page.locator(f"#{E.MODEL_SELECT} input"))
            self._control(cid, "model dropdown 'Model'", select)
            if select.input_value() != self.model:
                select.fill(self.model)
                select.press("Enter")
            status = self.textbox("Model status", E.MODEL_STATUS)
            ready = re.compile(rf"^ready: {re.escape(self.model)}\b")
            st.seconds = self._act(
                cid,
                "button 'Load model'",
                self.button("Load model", E.MODEL_LOAD),
                [E.MODEL_STATUS],
                lambda ms: expect(status).to_have_value(ready, timeout=ms),
            )
            st.notes.append(status.input_value())
            self._measure(cid, round(st.seconds, 3), detail=f"click 'Load model' -> {status.input_value()[:100]}")
        return st.seconds

    @_retry_on_network_change
    def evaluate(self, harmful: str = HARMFUL_TEXT, harmless: str = HARMLESS_TEXT) -> float:
        cid = "e2e.evaluate_time"
        with self.step("evaluate", "harmful and harmless texts evaluated") as st:
            self._open_tab(cid, "Evaluation", E.TAB_EVALUATE)
            text = self._control(cid, "textbox 'Text to evaluate'", self.textbox("Text to evaluate", E.EVAL_TEXT))
            verdict = self.textbox("Verdict", E.EVAL_VERDICT)
            button = self.button("Evaluate", E.EVAL_BUTTON)
            seen, times = {}, {}
            for kind, sample in (("harmful", harmful), ("harmless", harmless)):
                text.fill(sample)
                times[kind] = self._act(
                    cid,
                    "button 'Evaluate'",
                    button,
                    [E.EVAL_VERDICT, E.EVAL_RESULT],
                    lambda ms: expect(verdict).to_have_value(VERDICT, timeout=ms),
                )
                seen[kind] = verdict.input_value()
            st.seconds = max(times.values())
            st.notes += [f"{k}: {v}" for k, v in seen.items()]
            self._measure(
                cid, round(st.seconds, 3), detail=f"harmful {times['harmful']:.2f} s, harmless {times['harmless']:.2f} s"
            )
            harmful_ok = bool(re.match(r"^Flagged: .*\bharm_prevention\b", seen["harmful"]))
            harmless_ok = seen["harmless"].startswith("Not flagged")
            self._measure(
                "e2e.evaluate_verdicts",
                harmful_ok and harmless_ok,
                detail=f"harmful -> {seen['harmful']!r}; harmless -> {seen['harmless']!r}",
            )
        return st.seconds

    @_retry_on_network_change
    def critique(self, prompt: str = CRITIQUE_PROMPT) -> float:
        """The "Critique and revise" tab: one SL-CAI trace on demand, judged; every part non-empty."""
        cid = "e2e.critique_time"
        with self.step("critique", "one SL-CAI trace shown") as st:
            self._open_tab(cid, "Critique and revise", E.TAB_CRITIQUE)
            box = self.textbox("Prompt to critique and revise", E.CRITIQUE_PROMPT)
            self._control(cid, "textbox 'Prompt to critique and revise'", box).fill(prompt)
            result = self.block(E.CRITIQUE_RESULT)
            st.seconds = self._act(
                cid,
                "button 'Critique and revise'",
                self.button("Critique and revise", E.CRITIQUE_BUTTON),
                [E.CRITIQUE_RESULT],
                lambda ms: expect(result).to_contain_text("Judge: revision", timeout=ms),
            )
            text = result.inner_text()
            st.notes.append(" ".join(text.split())[:300])
            self._measure(cid, round(st.seconds, 2), detail=f"prompt {prompt[:50]!r}")
            empty = [p for p in TRACE_PARTS if not re.search(re.escape(p) + r"[ \t]*\S", text)]
            self._measure(
                "e2e.critique_trace",
                not empty,
                detail=(f"empty or missing: {', '.join(empty)}; " if empty else "") + " ".join(text.split())[:160],
            )
        return st.seconds

    @_retry_on_network_change
    def train(self) -> float:
        cid = "e2e.train_time"
        with self.step("train", f"training ({self.preset}) finished") as st:
            self._open_tab(cid, "Training", E.TAB_TRAIN)
            radio = self.page.get_by_role("radio", name=self.preset, exact=True).or_(
                self.page.locator(f"#{E.TRAIN_PRESET} input[value='{self.preset}']")
            )
            self._control(cid, f"preset radio '{self.preset}'", radio).check()
            status = self.textbox("Training status", E.TRAIN_STATUS)
            checkpoint = self.textbox("Checkpoint", E.TRAIN_CHECKPOINT)
            self._control(cid, "textbox 'Checkpoint'", checkpoint)
            before = checkpoint.input_value()
            progress = self.block(E.TRAIN_PROGRESS)
            with contextlib.suppress(PlaywrightError):
                self.page.evaluate(
                    _WATCH_PROGRESS, [progress.element_handle(timeout=self.ui_timeout * 1000), f"#{E.TRAIN_STATUS} textarea"]
                )

            def finished(ms: float) -> None:
                t_end = time.perf_counter() + ms / 1000
                expect(checkpoint).not_to_have_value(re.compile(rf"^({re.escape(before)})?$"), timeout=ms)
                expect(status).to_have_value(FINAL_TRAIN_STATE, timeout=max(t_end - time.perf_counter(), 0.5) * 1000)

            st.seconds = self._act(
                cid, "button 'Start training'", self.button("Start training", E.TRAIN_START), [E.TRAIN_STATUS], finished
            )
            final = status.input_value()
            self.checkpoint = checkpoint.input_value()
            m = re.search(r"runs/([^/]+)/", self.checkpoint)
            self.run_id = m.group(1) if m else None
            state = final.split(" ")[0]
            st.notes += [final, f"checkpoint: {self.checkpoint}"]
            self._measure(cid, round(st.seconds, 2), detail=f"preset {self.preset}: {final[:120]}")
            if self.preset == "smoke" and "train.smoke_time" in self.gate.criteria:
                self._measure(
                    "train.smoke_time", round(st.seconds, 2), detail="browser: click 'Start training' -> checkpoint shown"
                )
            self._measure("train.state", state, detail=f"browser: training status {final[:120]!r}")
            values: list[dict] = []
            with contextlib.suppress(PlaywrightError):
                values = self.page.evaluate("() => window.__gateProgress || []")
            nums = [v["value"] for v in values]
            # The UI refreshes twice a second: a run shorter than a few ticks may go 0 -> 100 % unseen
            # in between; a longer one must show an intermediate value.
            seen_between = any(0 < n < 100 for n in nums) or st.seconds < PROGRESS_VISIBLE_AFTER_S
            advanced = bool(nums) and nums[-1] == 100 and all(a <= b for a, b in zip(nums, nums[1:])) and seen_between
            st.notes.append("progress seen: " + " → ".join(f"{n:.0f}%" for n in nums))
            self._measure(
                "e2e.train_progress",
                advanced,
                detail=f"progress shown over {st.seconds:.1f} s: " + (" → ".join(f"{n:.0f}%" for n in nums) or "none"),
            )
        with self.step("runs", "run listed in the Runs tab") as st2:
            listed = False
            if self.run_id:
                self._open_tab("train.checkpoint", "Runs", E.TAB_RUNS)
                self._control("train.checkpoint", "button 'Refresh' (Runs)", self.button("Refresh", E.RUNS_REFRESH)).click()
                try:
                    expect(self.block(E.RUNS_TABLE)).to_contain_text(self.run_id, timeout=self.ui_timeout * 1000)
                    listed = True
                except AssertionError:
                    listed = False
            st2.notes.append(f"run {self.run_id} listed: {listed}")
            self._measure(
                "train.checkpoint",
                bool(self.checkpoint) and listed,
                detail=f"browser: checkpoint {self.checkpoint!r}; run {self.run_id} in the Runs tab: {listed}",
            )
        return st.seconds

    @_retry_on_network_change
    def generate(self, prompt: str = GEN_PROMPT) -> float:
        cid = "e2e.generate_time"
        with self.step("generate", "base vs trained generated") as st:
            self._open_tab(cid, "Generation", E.TAB_GENERATE)
            self._control(cid, "textbox 'Prompt'", self.textbox("Prompt", E.GEN_PROMPT)).fill(prompt)
            base_eval = self.textbox("Base model verdict", E.GEN_BASE_EVAL)
            trained_eval = self.textbox("Trained model verdict", E.GEN_TRAINED_EVAL)
            base = self.textbox("Base model", E.GEN_BASE)
            trained = self.textbox("Trained model", E.GEN_TRAINED)

            def shown(ms: float) -> None:
                expect(base_eval).to_have_value(VERDICT, timeout=ms)
                expect(trained_eval).not_to_have_value("", timeout=ms)

            st.seconds = self._act(
                cid,
                "button 'Generate from both models'",
                self.button("Generate from both models", E.GEN_BUTTON),
                [E.GEN_BASE, E.GEN_BASE_EVAL, E.GEN_TRAINED, E.GEN_TRAINED_EVAL],
                shown,
            )
            got = {
                "base": base.input_value(),
                "base verdict": base_eval.input_value(),
                "trained": trained.input_value(),
                "trained verdict": trained_eval.input_value(),
            }
            st.notes += [f"{k}: {v[:100]!r}" for k, v in got.items()]
            self._measure(cid, round(st.seconds, 3), detail=f"prompt {prompt[:50]!r}")
            ok = (
                bool(got["base"].strip())
                and bool(got["trained"].strip())
                and all(VERDICT.match(got[k]) for k in ("base verdict", "trained verdict"))
            )
            self._measure(
                "e2e.generate_verdicts",
                ok,
                detail=f"base verdict {got['base verdict'][:60]!r}; trained verdict {got['trained verdict'][:60]!r}",
            )
        return st.seconds

    @_retry_on_network_change
    def impact(self, downloads_dir: Path | None = None) -> float:
        cid = "e2e.impact_time"
        with self.step("impact", "impact analysis with downloads") as st:
            self._open_tab(cid, "Impact", E.TAB_IMPACT)
            summary = self.textbox("Summary", E.IMPACT_SUMMARY)
            links = {
                kind: self.page.locator(f"#{elem} a[download], #{elem} a[href*='/file']").first
                for kind, elem in (("json", E.IMPACT_JSON), ("csv", E.IMPACT_CSV))
            }

            def shown(ms: float) -> None:
                expect(summary).to_have_value(re.compile(r"\d+ prompts .*alignment"), timeout=ms)
                for link in links.values():
                    expect(link).to_be_visible(timeout=ms)

            st.seconds = self._act(
                cid,
                "button 'Run impact analysis'",
                self.button("Run impact analysis", E.IMPACT_BUTTON),
                [E.IMPACT_SUMMARY, E.IMPACT_JSON, E.IMPACT_CSV],
                shown,
            )
            st.notes.append(summary.input_value())
            self._measure(cid, round(st.seconds, 2), detail=summary.input_value()[:120])
            problems, parsed = [], {}
            for kind, link in links.items():
                try:
                    with self.page.expect_download(timeout=self.ui_timeout * 1000) as info:
                        link.click()
                    dl = info.value
                    target = (downloads_dir or self.shots_dir or Path(dl.path()).parent) / f"impact.{kind}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    dl.save_as(str(target))
                    text = target.read_text(encoding="utf-8")
                    if kind == "json":
                        data = json.loads(text)
                        missing = [k for k in ("before", "after", "per_principle") if k not in data]
                        if missing:
                            problems.append(f"JSON lacks {missing}")
                        parsed[kind] = f"{len(text)} bytes, {data.get('prompts')} prompts"
                    else:
                        rows = list(csv.DictReader(io.StringIO(text)))
                        if not rows:
                            problems.append("CSV has no rows")
                        parsed[kind] = f"{len(rows)} rows, columns {list(rows[0]) if rows else []}"
                    if self.record:
                        self.gate.attach(target, f"impact download ({kind.upper()})")
                except (PlaywrightError, ValueError, OSError) as exc:
                    problems.append(f"{kind.upper()} download: {_first_line(exc)}")
            st.notes += [f"{k}: {v}" for k, v in parsed.items()] + problems
            self._measure(
                "e2e.impact_downloads", not problems, detail="; ".join([*(f"{k}: {v}" for k, v in parsed.items()), *problems])
            )
        return st.seconds
