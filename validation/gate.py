"""The checks' API: measure a value against its criterion, record it, fail with a clear message.

    gate.measure("health.status", 200, detail="GET /health")     # compare, record, fail if not met
    gate.measure("evaluate.time", 0.02, soft=True)                # record; the test fails at its end
    gate.skip("image.size", "url target: no image")               # recorded as skipped, pytest skip
    with gate.timed("model.load_time", detail="POST /api/models/load"):
        ...                                                       # wall time of the block
    gate.threshold("train.smoke_time"); gate.param("train_preset"); gate.attach(path, "title")

A `Recorder` holds everything one session measured; a `Gate` is the recorder bound to one test.
Both work without pytest running (the gate-sensitivity tests build their own), except that
`skip` raises pytest's Skipped.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from validation.criteria import FAIL, PASS, SKIP, Criteria, Criterion, compare, fmt_value


class CriterionFailed(AssertionError):
    """A measured value does not meet its criterion. The message names both."""

    def __init__(self, results: list[Result]):
        self.results = results
        super().__init__("\n".join(r.message for r in results))


@dataclass
class Result:
    id: str
    verdict: str
    measured: Any
    threshold: Any
    threshold_text: str
    unit: str
    description: str
    detail: str = ""
    reason: str = ""
    test: str = ""
    at: float = field(default_factory=time.time)

    @property
    def measured_text(self) -> str:
        return fmt_value(self.measured, self.unit)

    @property
    def message(self) -> str:
        if self.verdict == SKIP:
            return f"[{self.id}] skipped: {self.reason}"
        text = (
            f"[{self.id}] {'FAILED' if self.verdict == FAIL else 'passed'}: {self.description}: "
            f"measured {self.measured_text}, threshold {self.threshold_text}"
        )
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict:
        d = asdict(self)
        d["measured_text"] = self.measured_text
        return d


class Clock:
    """Where the session's wall time went: build, engine (docker), app (requests, polls), ...

    The rest of the wall time is the harness's own overhead (the team's target: <= 10 s).
    """

    def __init__(self) -> None:
        self.spent_s: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def spent(self, category: str) -> Iterator[None]:
        # Nested blocks count once, in the outermost category. Only the main thread's waits count: the
        # wall time is its own, and background threads (samplers, watchers) run while it waits.
        if getattr(self._local, "depth", 0) or threading.current_thread() is not threading.main_thread():
            yield
            return
        self._local.depth = 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._local.depth = 0
            with self._lock:
                self.spent_s[category] += time.perf_counter() - t0

    def sleep(self, seconds: float) -> None:
        """Sleep while waiting for the app (counted as app time, not overhead)."""
        with self.spent("app"):
            time.sleep(seconds)

    def totals(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.spent_s.items()}


CLOCK = Clock()


class Recorder:
    """All results and attachments of one session."""

    def __init__(self, criteria: Criteria, target_kind: str = "", session: str = "") -> None:
        self.criteria = criteria
        self.target_kind = target_kind
        self.session = session
        self.results: list[Result] = []
        self.attachments: list[dict] = []
        self.notes: list[str] = []
        self.sections: list[dict] = []  # extra report sections: {"title", "markdown", "data"}
        self._lock = threading.Lock()

    def add(self, result: Result) -> Result:
        with self._lock:
            self.results.append(result)
        return result

    def attach(self, path: Path | str, title: str) -> None:
        with self._lock:
            self.attachments.append({"title": title, "path": str(path)})

    def note(self, text: str) -> None:
        self.notes.append(text)

    def section(self, title: str, markdown: str, data: Any = None) -> None:
        """A section of report.md after the criteria table (`## title`), and its data in report.json."""
        with self._lock:
            self.sections.append({"title": title, "markdown": markdown, "data": data})

    def failed(self) -> list[Result]:
        return [r for r in self.results if r.verdict == FAIL]

    def gate(self, test: str = "") -> Gate:
        return Gate(self, test)


class Gate:
    """The recorder, bound to one test (the API checks use)."""

    def __init__(self, recorder: Recorder, test: str = "") -> None:
        self.recorder = recorder
        self.test = test
        self.pending: list[Result] = []  # soft failures not raised yet

    @property
    def criteria(self) -> Criteria:
        return self.recorder.criteria

    @property
    def target_kind(self) -> str:
        return self.recorder.target_kind

    def criterion(self, cid: str) -> Criterion:
        return self.criteria[cid]

    def threshold(self, cid: str) -> Any:
        return self.criteria[cid].threshold

    def param(self, name: str) -> Any:
        return self.criteria.param(name)

    def _result(self, c: Criterion, verdict: str, measured: Any, detail: str, reason: str = "") -> Result:
        return Result(
            id=c.id,
            verdict=verdict,
            measured=measured,
            threshold=c.threshold,
            threshold_text=c.threshold_text,
            unit=c.unit,
            description=c.description,
            detail=detail,
            reason=reason,
            test=self.test,
        )

    def measure(self, cid: str, measured: Any, detail: str = "", soft: bool = False) -> Result:
        """Compare `measured` (in the criterion's unit) with the profile's threshold and record it.

        On failure: raise CriterionFailed at once, or with soft=True keep going (the test fails
        when it ends, with every soft failure listed).
        """
        c = self.criteria[cid]
        if self.target_kind and not c.applies_to(self.target_kind):
            self.skip(cid, f"does not apply to the {self.target_kind} target")
        result = self.recorder.add(self._result(c, PASS if compare(c, measured) else FAIL, measured, detail))
        if result.verdict == FAIL:
            if soft:
                self.pending.append(result)
            else:
                raise CriterionFailed([*self.pending, result])
        return result

    def fail(self, cid: str, measured: Any, detail: str) -> None:
        """Record a failure that has no numeric measurement (e.g. the request itself failed)."""
        c = self.criteria[cid]
        raise CriterionFailed([*self.pending, self.recorder.add(self._result(c, FAIL, measured, detail))])

    def skip(self, cid: str | list[str], reason: str) -> None:
        """Record the criterion (or several) as skipped with its reason, and skip the test."""
        for one in [cid] if isinstance(cid, str) else cid:
            self.record_skip(one, reason)
        pytest.skip(reason)

    def record_skip(self, cid: str, reason: str) -> Result:
        """Record the criterion as skipped with its reason, and go on: for a test that measures other
        criteria on this target (e.g. perf.network_io on a process, beside its memory and CPU)."""
        return self.recorder.add(self._result(self.criteria[cid], SKIP, None, "", reason))

    def require(self, cids: str | list[str]) -> None:
        """Skip (with reason) when none of these criteria applies to the current target."""
        ids = [cids] if isinstance(cids, str) else cids
        if self.target_kind and not any(self.criteria[c].applies_to(self.target_kind) for c in ids):
            self.skip(ids, f"does not apply to the {self.target_kind} target")

    @contextlib.contextmanager
    def timed(self, cid: str, detail: str = "", soft: bool = False) -> Iterator[dict]:
        """Measure the wall time of the block (seconds, or ms when the criterion's unit is ms)."""
        box: dict = {}
        t0 = time.perf_counter()
        yield box
        elapsed = time.perf_counter() - t0
        box["seconds"] = elapsed
        value = elapsed * 1000 if self.criteria[cid].unit == "ms" else elapsed
        self.measure(cid, round(value, 4), detail=box.get("detail", detail), soft=soft)

    def attach(self, path: Path | str, title: str) -> None:
        """Link a file (screenshot, log, plot) from report.md."""
        self.recorder.attach(path, title)

    def raise_pending(self) -> None:
        if self.pending:
            pending, self.pending = self.pending, []
            raise CriterionFailed(pending)
