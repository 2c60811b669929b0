"""The app's user and serving metrics judged by their effects: what a user's actions must move on
/metrics (criterion e2e.usage_metrics), so a metric that exists but never counts fails. The names
come from app/metrics.py, where they are defined."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app import metrics as M
from validation.checks.common import _short
from validation.gate import Gate

Sample = tuple[str, dict[str, str], float]
INTERACTIVE = (("priority", M.priority(background=False)),)


@dataclass(frozen=True)
class Rise:
    """A sample of /metrics that must rise by at least `by` (summed over the labels not given)."""

    metric: object
    labels: tuple[tuple[str, str], ...] = ()
    by: float = 1

    @property
    def name(self) -> str:
        return M.counted(self.metric)

    def __str__(self) -> str:
        return self.name + ("{" + ",".join(f'{k}="{v}"' for k, v in self.labels) + "}" if self.labels else "")

    def total(self, samples: list[Sample]) -> float:
        wanted = dict(self.labels)
        return sum(v for name, labels, v in samples
                   if name == self.name and all(labels.get(k) == v for k, v in wanted.items()))


def journey_rises(evaluations: dict[str, int], preset: str) -> list[Rise]:
    """What load -> evaluate (clicks by mode) -> train (preset) -> generate moves: one session, its
    evaluations, one training run, one generation and, at the decoder, its tokens and latencies."""
    return [
        Rise(M.SESSIONS_STARTED),
        *(Rise(M.EVALUATIONS, (("mode", mode),), n) for mode, n in sorted(evaluations.items())),
        Rise(M.TRAINING_STARTED, (("preset", preset),)),
        Rise(M.GENERATIONS),
        Rise(M.GENERATED_TOKENS, INTERACTIVE),
        Rise(M.FIRST_TOKEN_LATENCY, INTERACTIVE),
        Rise(M.OUTPUT_TOKEN_LATENCY, INTERACTIVE),
    ]


def scrape(http: httpx.Client) -> list[Sample] | str:
    """The samples of GET /metrics, or why there are none."""
    try:
        r = http.get("/metrics", timeout=10)
        r.raise_for_status()
        return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(r.text) for s in f.samples]
    except Exception as exc:  # noqa: BLE001 - httpx and the parser raise several kinds
        return f"GET /metrics: {type(exc).__name__}: {_short(str(exc), 120)}"


def usage_metrics(http: httpx.Client, gate: Gate, before: list[Sample] | str, rises: list[Rise],
                  criterion: str = "e2e.usage_metrics") -> None:
    """Scrape again and judge `rises` against `before`: measured is the list of those that fell short."""
    after = scrape(http)
    broken = [s for s in (before, after) if isinstance(s, str)]
    if broken:
        gate.measure(criterion, broken, detail="no /metrics to compare", soft=True)
        return
    risen = {str(r): r.total(after) - r.total(before) for r in rises}
    short = [f"{r} +{risen[str(r)]:g} (at least +{r.by:g})" for r in rises if risen[str(r)] < r.by]
    gate.measure(criterion, short, detail="; ".join(f"{k} +{v:g}" for k, v in risen.items()), soft=True)
