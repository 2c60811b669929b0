"""Impact of a training run: base vs trained on three held-out evaluation sets (never trained on),
each answer measured independently of the model being trained (app/behaviour.py):

* harm: flagged answers (rules + the embedding judge) to red-team prompts should fall;
* over-refusal: refusals of safe prompts that merely sound alarming should not rise;
* helpfulness: answers to everyday requests should stay answers (not talk about the request) and
  stay on topic (relevance: the judge's similarity of answer to prompt).

Every change is paired (the same prompts answered by both models): a bootstrap interval over prompts
for each measure, and the exact McNemar p for the yes/no ones (app/stats.py). Greedy decoding, and
a request's tokens do not depend on its batch (app/engine.py), so a report is reproducible.
"""

from __future__ import annotations

import csv
import io
import logging
import time

from app import behaviour, constitution, evaluation, stats
from app.generation import text_of
from app.models import LoadedModel

log = logging.getLogger(__name__)

BINARY = ("flagged", "refused", "about_request")
MEASURES = (*BINARY, "relevance")
# The side of the demo each set shows, and the measures it is judged on.
HEADLINES = (("harm", "red_team", "flagged"), ("over_refusal", "safe", "refused"),
             ("helpfulness", "ordinary", "about_request"), ("relevance", "ordinary", "relevance"))
CSV_COLUMNS = ("set", "id", "prompt", "base", "trained", *(f"{side}_{m}" for m in MEASURES for side in ("base", "trained")),
               "base_flagged_principles", "trained_flagged_principles", "base_trained_similarity")


def prompts(limit: int | None) -> list[tuple[str, dict]]:
    """(set, item) for the first `limit` prompts of each evaluation set (all when None)."""
    return [(name, item) for name in constitution.EVAL_SETS for item in constitution.eval_set(name)[:limit]]


def answers(base: LoadedModel, trained: LoadedModel, items: list[str], *, max_new_tokens: int, seed: int,
            temperature: float = 0.0) -> list[tuple[str, str]]:
    """(base answer, trained answer) for each prompt, each model's answers decoded together."""
    texts = []
    for lm in (base, trained):
        requests = [lm.request([{"role": "user", "content": p}], max_new_tokens=max_new_tokens,
                               temperature=temperature, seed=seed + i) for i, p in enumerate(items)]
        lm.worker.run_all(requests)
        texts.append([text_of(lm.tokenizer, r) for r in requests])
    return list(zip(*texts))


def row(set_name: str, item: dict, base_text: str, trained_text: str, sims: tuple[float, float, float]) -> dict:
    """One prompt's answers and every measure of each; `sims`: the judge's similarity of prompt to base
    answer, prompt to trained answer, base answer to trained answer."""
    out = {"set": set_name, "id": item["id"], "prompt": item["prompt"], "base": base_text, "trained": trained_text}
    for side, text, relevance in (("base", base_text, sims[0]), ("trained", trained_text, sims[1])):
        m = behaviour.measure(item["prompt"], text, relevance)
        out[f"{side}_flagged_principles"] = m.pop("flagged_principles")
        out[f"{side}_alignment"] = m.pop("alignment")
        out[f"{side}_weighted_score"] = m.pop("weighted_score")
        out.update({f"{side}_{k}": v for k, v in m.items()})
    out["base_trained_similarity"] = sims[2] if set_name != "red_team" else None
    return out


def run(base: LoadedModel, trained: LoadedModel, run_id: str, *, limit: int | None, max_new_tokens: int, seed: int,
        temperature: float = 0.0) -> dict:
    started = time.perf_counter()
    chosen = prompts(limit)
    pairs = answers(base, trained, [item["prompt"] for _, item in chosen], max_new_tokens=max_new_tokens,
                    seed=seed, temperature=temperature)
    t0 = time.perf_counter()
    sims = behaviour.similarities([pair for (_, item), (b, t) in zip(chosen, pairs)
                                   for pair in ((item["prompt"], b), (item["prompt"], t), (b, t))])
    rows = [row(name, item, b, t, tuple(sims[3 * i:3 * i + 3]))
            for i, ((name, item), (b, t)) in enumerate(zip(chosen, pairs))]
    log.info("impact measured", extra={"prompts": len(rows), "decode_s": round(t0 - started, 1),
                                       "measure_s": round(time.perf_counter() - t0, 1)})
    report = summarize(rows, seed=seed)
    report.update(run_id=run_id, json_url=f"/api/runs/{run_id}/impact.json", csv_url=f"/api/runs/{run_id}/impact.csv")
    return report


def set_summary(rows: list[dict], seed: int = 0, clusters: list | None = None) -> dict:
    """Each measure's paired change over one set's rows (percentage points for yes/no measures)."""
    out = {m: stats.paired_change([r[f"base_{m}"] for r in rows], [r[f"trained_{m}"] for r in rows],
                                  binary=m in BINARY, seed=seed, clusters=clusters, scale=100 if m in BINARY else 1)
           for m in MEASURES}
    similar = [r["base_trained_similarity"] for r in rows if r.get("base_trained_similarity") is not None]
    if similar:
        lo, hi = stats.bootstrap_interval(similar, seed=seed)
        out["base_trained_similarity"] = {"n": len(similar), "mean": round(stats.mean(similar), 4),
                                          "ci95": [round(lo, 4), round(hi, 4)]}
    return out


def summarize(rows: list[dict], seed: int = 0) -> dict:
    """The report's figures, all computed from its rows (the gate recomputes them the same way)."""
    sets = {name: [r for r in rows if r["set"] == name] for name in constitution.EVAL_SETS}
    summaries = {name: set_summary(items, seed) for name, items in sets.items() if items}
    red = sets["red_team"]
    before = [_evaluation(r, "base") for r in red]
    after = [_evaluation(r, "trained") for r in red]
    a_before, a_after = (evaluation.alignment(e) if e else 0.0 for e in (before, after))
    r_before, r_after = ({k: round(v, 4) for k, v in evaluation.violation_rates(e).items()} for e in (before, after))
    return {
        "prompts": len(rows), "sets": {name: len(items) for name, items in sets.items()},
        "judge": "rules + embedding judge (independent of the trained model)",
        "summary": summaries, "headline": headline(summaries), "verdict": sentence(summaries),
        "flagged_rate": {"before": round(stats.mean([r["base_flagged"] for r in red]), 4),
                         "after": round(stats.mean([r["trained_flagged"] for r in red]), 4)},
        "before": {"alignment": round(a_before, 4), "violation_rates": r_before},
        "after": {"alignment": round(a_after, 4), "violation_rates": r_after},
        "change_points": round((a_after - a_before) * 100, 2),
        "per_principle": [{"principle": name, "before": r_before.get(name, 0.0), "after": r_after.get(name, 0.0),
                           "change_points": round((r_before.get(name, 0.0) - r_after.get(name, 0.0)) * 100, 2)}
                          for name in constitution.NAMES],
        "examples": rows,
    }


def _evaluation(r: dict, side: str) -> dict:
    """The fields of an evaluation that alignment and violation rates read, from a row."""
    flagged = r[f"{side}_flagged_principles"]
    return {"flagged": bool(flagged), "flagged_principles": flagged, "weighted_score": r[f"{side}_weighted_score"]}


def headline(summaries: dict) -> dict:
    return {side: {"set": set_name, "measure": measure, **summaries[set_name][measure]}
            for side, set_name, measure in HEADLINES if set_name in summaries}


_WORDS = {"harm": "flagged answers to red-team prompts", "over_refusal": "refusals of safe prompts",
          "helpfulness": "answers about the request instead of an answer (ordinary prompts)",
          "relevance": "relevance of answers to ordinary prompts"}


def sentence(summaries: dict) -> str:
    """The change on each side in plain words, and whether it is significant (95 % interval)."""
    parts = []
    for side, figures in headline(summaries).items():
        unit = "" if figures["measure"] == "relevance" else " %"
        lo, hi = figures["ci95"]
        if not figures["significant"]:
            judged = "no significant change"
        else:
            judged = f"significantly {'lower' if hi < 0 else 'higher'}"
        parts.append(f"{_WORDS[side]}: {figures['before']}{unit} -> {figures['after']}{unit} "
                     f"({figures['change']:+} , 95 % CI {lo:+} to {hi:+}): {judged}")
    return "; ".join(parts) + "."


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for ex in report["examples"]:
        writer.writerow([";".join(v) if isinstance(v := ex.get(c), list) else v for c in CSV_COLUMNS])
    return buf.getvalue()
