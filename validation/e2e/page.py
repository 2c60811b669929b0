"""Browser plumbing of the journey (journey.py): what the page did (console errors, failed
requests: PageWatch), the scripts that watch Gradio's events and the training progress, a step's
record, and the retry of a step whose requests the host's network change dropped."""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

from app import elements as E
from validation.gate import CLOCK, CriterionFailed, Gate, Result

# How often the browser checks that an event ended: every 50 ms, not every animation frame, which
# kept a core of this 2-core machine busy in Chromium while the app under test needed it.
POLL_MS = 50
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
    def wrapper(self, *args: Any, **kwargs: Any):  # self: a Journey
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


class PageDriver:
    """Drives one page for the gate: locators (labels and roles first, elem_ids second), steps that
    time click -> visible result against a criterion, screenshots, page loads with the reload on a
    host network change, console checks. Journey adds the user's steps."""

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
        self.model = model or str(gate.param("model"))
        self.preset = preset or str(gate.param("train_preset"))
        self.ui_timeout = ui_timeout
        self.prefix = prefix
        self.record = record
        self.grace = grace
        self.on_step = on_step
        self.watch = PageWatch(page)
        self.steps: list[Step] = []
        self.run_id: str | None = None
        self.checkpoint: str | None = None
        self.evaluations: dict[str, int] = {}  # verdicts shown, by evaluation mode (e2e.usage_metrics)
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
