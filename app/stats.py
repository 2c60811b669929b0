"""Paired statistics for base -> trained on the same prompts: a percentile bootstrap over prompts for
the mean change of any measure, and the exact McNemar test for yes/no measures.

Pairing matters: the same prompt answered by both models, so the change is judged on the per-prompt
differences, whose spread is much smaller than that of two independent rates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def bootstrap_interval(diffs: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                       clusters: Sequence[object] | None = None) -> tuple[float, float]:
    """95 % percentile interval of the mean of `diffs`, resampling prompts with replacement (seeded:
    the same rows give the same interval). `clusters`: resample whole clusters (a prompt answered
    under several training seeds is one cluster)."""
    if not diffs:
        return 0.0, 0.0
    groups: dict[object, list[float]] = {}
    for i, d in enumerate(diffs):
        groups.setdefault(clusters[i] if clusters is not None else i, []).append(float(d))
    sums = [(sum(g), len(g)) for g in groups.values()]
    rng = random.Random(seed)
    k = len(sums)
    means = []
    for _ in range(resamples):
        total = count = 0.0
        for _ in range(k):
            s, n = sums[rng.randrange(k)]
            total += s
            count += n
        means.append(total / count)
    means.sort()
    tail = (1 - CONFIDENCE) / 2
    lo = means[int(math.floor(tail * (resamples - 1)))]
    hi = means[int(math.ceil((1 - tail) * (resamples - 1)))]
    return lo, hi


def mcnemar_exact(only_before: int, only_after: int) -> float:
    """Two-sided exact McNemar p-value: of the prompts where the two disagree, `only_before` are yes
    for the base only and `only_after` for the trained only; under no change each is Binomial(n, 1/2)."""
    n = only_before + only_after
    if n == 0:
        return 1.0
    k = min(only_before, only_after)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_change(before: Sequence[float], after: Sequence[float], *, binary: bool, seed: int = 0,
                  clusters: Sequence[object] | None = None, scale: float = 100.0) -> dict:
    """Base -> trained for one measure: the two means, their change with its 95 % bootstrap interval
    (all times `scale`: percentage points for yes/no measures), and for yes/no the exact McNemar p."""
    diffs = [float(a) - float(b) for b, a in zip(before, after)]
    lo, hi = bootstrap_interval(diffs, seed=seed, clusters=clusters)
    digits = 2 if scale >= 100 else 4  # points to 0.01, a cosine to 0.0001

    def r(x: float) -> float:
        return round(x * scale, digits)

    out = {"n": len(diffs), "before": r(mean(before)), "after": r(mean(after)), "change": r(mean(diffs)),
           "ci95": [r(lo), r(hi)]}
    if binary:
        only_before = sum(1 for b, a in zip(before, after) if b and not a)
        only_after = sum(1 for b, a in zip(before, after) if a and not b)
        out.update(only_before=only_before, only_after=only_after, p=round(mcnemar_exact(only_before, only_after), 4))
    out["significant"] = out["ci95"][0] > 0 or out["ci95"][1] < 0
    return out
