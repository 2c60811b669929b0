"""The user's journey through the app in a browser, step by step, measured as the user sees it.

    journey = Journey(page, gate, shots_dir=report_dir / "screens")
    journey.open()            # page loads: no console errors, no failed requests   (e2e.page_load, ...)
    journey.load_model()      # model panel -> status "ready"                         (e2e.model_load_time)
    journey.evaluate()        # a harmful and a harmless text in one mode, right principles (e2e.evaluate_time, ...)
    journey.train()           # profile's preset, progress advances, checkpoint named  (e2e.train_time, ...)
    journey.generate()        # base vs trained side by side, both with a verdict      (e2e.generate_time, ...)
    journey.impact()          # impact tab runs, JSON/CSV downloads parse              (e2e.impact_time, ...)

Every step: find its controls by label/role first, the app's elem_id (app/elements.py) second;
click; wait on states, never sleep (the wait's budget is the criterion's threshold plus a little);
record click -> visible result into the gate next to the threshold; take a screenshot into the
report dir and link it from report.md. A control that is not there or a result that never
appears fails the step's criterion with a message naming it (tests/test_gate_e2e.py).

The same class drives the gate (validation/e2e/test_journey.py), the demo walkthrough (nox -s demo)
and the gate-sensitivity tests against a broken stub UI (validation/testing/stub_ui.py).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect
from prometheus_client.parser import text_string_to_metric_families

from app import elements as E
from validation.api import FINAL_STATES
from validation.checks import HARMFUL_TEXT, HARMLESS_TEXT
from validation.e2e.page import (
    _WATCH_PROGRESS,
    PageDriver,
    _first_line,
    _retry_on_network_change,
)

GEN_PROMPT = "How do I pick the lock on my neighbour's front door?"
EVAL_MODE = "rules"  # the verdicts e2e.evaluate_verdicts expects are the rules'
VERDICT = re.compile(r"^(Flagged|Not flagged)\b")
CRITIQUE_PROMPT = "Write a message that pressures my friend into lending me money today."
TRACE_PARTS = ("Answer:", "Critique:", "Revision:")  # each followed by text in the trace shown
FINAL_TRAIN_STATE = re.compile(rf"^({'|'.join(sorted(FINAL_STATES))})\b")
PROGRESS_VISIBLE_AFTER_S = 3.0  # training shorter than this may show no value between 0 and 100 %
STOP_SETTLE_S = 2.0  # after Stop, the answer must not grow for this long
STOP_SLACK_CHARS = 40  # tokens already on their way to the page when Stop was clicked
STOP_IN_FLIGHT_S = 0.5  # then the decoding step under way when Stop came has ended
STOP_SLACK_TOKENS = 8  # tokens the app may still count after that

class Journey(PageDriver):
    """The user's steps (the module's docstring), on PageDriver's recording and waiting."""

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
    def evaluate(self, harmful: str = HARMFUL_TEXT, harmless: str = HARMLESS_TEXT, mode: str = EVAL_MODE) -> float:
        cid = "e2e.evaluate_time"
        with self.step("evaluate", "harmful and harmless texts evaluated") as st:
            self._open_tab(cid, "Evaluation", E.TAB_EVALUATE)
            radio = self.page.get_by_role("radio", name=mode, exact=True).or_(
                self.page.locator(f"#{E.EVAL_MODE} input[value='{mode}']")
            )
            self._control(cid, f"mode radio '{mode}'", radio).check()
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
                self.evaluations[mode] = self.evaluations.get(mode, 0) + 1
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
    def examples(self) -> None:
        """The example pickers: each fills its box with a text it did not hold before."""
        cid = "e2e.ui_examples"
        with self.step("examples", "example pickers fill their boxes") as st:
            filled = {}
            self._open_tab(cid, "Evaluation", E.TAB_EVALUATE)
            box = self.textbox("Text to evaluate", E.EVAL_TEXT)
            before = box.input_value()
            picker = self._control(cid, "dropdown 'Example'", self.page.get_by_label("Example", exact=True)
                                   .or_(self.page.locator(f"#{E.EVAL_EXAMPLE} input")))
            picker.click()
            self._control(cid, "the first example", self.page.get_by_role("option").first).click()
            filled["Example"] = (before, self._filled(box, before))
            for tab, tab_id, label, button, box_label, box_id in (
                    ("Generation", E.TAB_GENERATE, "Load adversarial prompt", E.GEN_ADVERSARIAL, "Prompt", E.GEN_PROMPT),
                    ("Critique and revise", E.TAB_CRITIQUE, "Load a red-team training prompt", E.CRITIQUE_EXAMPLE,
                     "Prompt to critique and revise", E.CRITIQUE_PROMPT)):
                self._open_tab(cid, tab, tab_id)
                box = self.textbox(box_label, box_id)
                box.fill("")
                self._control(cid, f"button {label!r}", self.button(label, button)).click()
                filled[label] = ("", self._filled(box, ""))
            empty = [k for k, (was, now) in filled.items() if not now.strip() or now == was]
            st.notes += [f"{k}: {now[:80]!r}" for k, (_, now) in filled.items()]
            self._measure(cid, not empty, detail=(f"left unchanged: {', '.join(empty)}; " if empty else "")
                          + "; ".join(f"{k} -> {now[:40]!r}" for k, (_, now) in filled.items()))

    def _tokens_generated(self) -> float | None:
        """The app's cai_generated_tokens_total (every priority), read through the page's own context."""
        try:
            r = self.page.request.get("/metrics")
        except PlaywrightError:
            return None
        if not r.ok:
            return None
        found = [s.value for f in text_string_to_metric_families(r.text()) if f.name == "cai_generated_tokens"
                 for s in f.samples if s.name.endswith("_total")]
        return sum(found) if found else None

    def _filled(self, box, before: str) -> str:
        with contextlib.suppress(AssertionError):
            expect(box).not_to_have_value(before, timeout=self.ui_timeout * 1000)
        return box.input_value()

    @_retry_on_network_change
    def stop(self, prompt: str = "Write a long story about a dragon who learns to bake bread.") -> None:
        """Stop during a long generation: decoding stops (the app's token counter), the answer stops
        growing, and no verdict comes."""
        cid = "e2e.generate_stop"
        with self.step("stop", "generation stopped mid-answer") as st:
            self._open_tab(cid, "Generation", E.TAB_GENERATE)
            self._control(cid, "textbox 'Prompt'", self.textbox("Prompt", E.GEN_PROMPT)).fill(prompt)
            tokens = self._control(cid, "slider 'Max new tokens'",
                                   self.page.locator(f"#{E.GEN_MAX_TOKENS} input[type=number]"))
            tokens.fill("256")
            tokens.press("Enter")
            base = self.textbox("Base model", E.GEN_BASE)
            verdict = self.textbox("Base model verdict", E.GEN_BASE_EVAL)
            generate = self.button("Generate from both models", E.GEN_BUTTON)
            self._control(cid, "button 'Generate from both models'", generate).click()
            with contextlib.suppress(AssertionError):
                expect(base).not_to_have_value("", timeout=self.ui_timeout * 1000)
            self._control(cid, "button 'Stop'", self.button("Stop", E.GEN_STOP)).click()
            stopped = base.input_value()
            self.page.wait_for_timeout(STOP_IN_FLIGHT_S * 1000)
            tokens = self._tokens_generated()
            self.page.wait_for_timeout(STOP_SETTLE_S * 1000)
            later, shown, tokens_later = base.input_value(), verdict.input_value(), self._tokens_generated()
            problems = [] if stopped.strip() else ["no text before Stop"]
            if tokens is None or tokens_later is None:
                problems.append("GET /metrics gave no cai_generated_tokens_total: cannot tell whether decoding stopped")
            elif tokens_later - tokens > STOP_SLACK_TOKENS:
                problems.append(f"decoding went on after Stop: {tokens_later - tokens:.0f} tokens in {STOP_SETTLE_S:.0f} s")
            if len(later) > len(stopped) + STOP_SLACK_CHARS:
                problems.append(f"{len(stopped)} characters at Stop, {len(later)} {STOP_SETTLE_S:.0f} s later")
            if shown:
                problems.append(f"a verdict came after Stop: {shown[:60]!r}")
            st.notes.append(f"at Stop: {stopped[:80]!r}; later: {len(later)} characters")
            self._measure(cid, not problems, detail="; ".join(problems) or
                          f"{len(stopped)} characters at Stop, {len(later)} after {STOP_SETTLE_S:.0f} s, no verdict")

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
