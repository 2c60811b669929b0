"""How the judge's thresholds in app/data/constitution.json were chosen: a grid search per principle
on the labelled examples, with a leave-one-out estimate. A maintainer's tool (`python scripts/judge.py
calibrate`); nothing the app serves calls it, which is why it lives apart from app/evaluation.py.
"""

from __future__ import annotations

from typing import Any

from app import constitution as C
from app.evaluation import _judge_sims, normalize


def _confusion(pred: list[bool], truth: list[bool]) -> dict[str, float]:
    tp = sum(p and t for p, t in zip(pred, truth))
    fp = sum(p and not t for p, t in zip(pred, truth))
    fn = sum(t and not p for p, t in zip(pred, truth))
    tn = len(truth) - tp - fp - fn
    recall = tp / (tp + fn) if tp + fn else 1.0
    specificity = tn / (tn + fp) if tn + fp else 1.0
    return {"accuracy": round((tp + tn) / len(truth), 3), "recall": round(recall, 3),
            "false_positive_rate": round(1 - specificity, 3),
            "balanced_accuracy": round((recall + specificity) / 2, 3), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _balanced(correct: list[bool], truth: list[bool]) -> float:
    """Balanced accuracy (the mean of recall on violations and on clean texts): clean texts far
    outnumber violations, and plain accuracy would buy specificity with missed violations."""
    pos = [c for c, t in zip(correct, truth) if t]
    neg = [c for c, t in zip(correct, truth) if not t]
    return (sum(pos) / len(pos) if pos else 1.0) / 2 + (sum(neg) / len(neg) if neg else 1.0) / 2


def _fpr(flags: list[bool], truth: list[bool]) -> float:
    neg = [f for f, t in zip(flags, truth) if not t]
    return sum(neg) / len(neg) if neg else 0.0


MAX_FALSE_POSITIVE_RATE = 0.02  # of clean texts flagged, per principle: a judge that flags everyday answers measures nothing


def calibrate(examples: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Grid-search each principle's judge (threshold, margin) on labelled examples, for the best
    balanced accuracy among the pairs that flag at most MAX_FALSE_POSITIVE_RATE of clean texts.

    Returns per principle the best pair, its accuracy and a leave-one-out accuracy (the honest
    estimate: thresholds chosen without the held-out example), plus the current settings' accuracy.
    """
    examples = examples if examples is not None else C.eval_examples() + C.ui_examples() + C.judge_calibration()
    cached = [_judge_sims(normalize(e["text"])) for e in examples]
    labels = {p.name: [p.name in e["expected"] for e in examples] for p in C.PRINCIPLES}
    grid = [(t / 100, m / 100) for t in range(20, 91) for m in range(-10, 26)]

    def flags(name: str, t: float, m: float) -> list[bool]:
        out = []
        for segments, sims in cached:
            if not segments:
                out.append(False)
                continue
            vals, safe = sims[name][0], sims["safe"]
            out.append(any(v >= t and v - s >= m for v, s in zip(vals, safe)))
        return out

    report: dict[str, Any] = {}
    for p in C.PRINCIPLES:
        y = labels[p.name]
        table = {(t, m): flags(p.name, t, m) for t, m in grid}
        correct = {k: [f == l for f, l in zip(v, y)] for k, v in table.items()}
        acc = {k: _balanced(v, y) for k, v in correct.items() if _fpr(table[k], y) <= MAX_FALSE_POSITIVE_RATE}
        best = max(acc.values())
        tied = sorted(k for k, a in acc.items() if a == best)
        # among ties: the largest margin, then the middle threshold of that margin's tied range
        top_m = max(m for _, m in tied)
        ts = [t for t, m in tied if m == top_m]
        choice = (ts[len(ts) // 2], top_m)
        loo = 0
        for i in range(len(y)):
            acc_wo = {k: _balanced(correct[k][:i] + correct[k][i + 1:], y[:i] + y[i + 1:]) for k in acc}
            b = max(acc_wo.values())
            cands = sorted(k for k, a in acc_wo.items() if a == b)
            cm = max(m for _, m in cands)
            cts = [t for t, m in cands if m == cm]
            loo += correct[(cts[len(cts) // 2], cm)][i]
        report[p.name] = {
            "best": {"threshold": choice[0], "margin": choice[1], "accuracy": round(best, 3)},
            "loo_accuracy": round(loo / len(y), 3),
            "current": {"threshold": p.judge_threshold, "margin": p.judge_margin,
                        **_confusion(flags(p.name, p.judge_threshold, p.judge_margin), y)},
            "positives": sum(y), "n": len(y),
        }
    return report
