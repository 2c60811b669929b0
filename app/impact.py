"""Impact of a training run: base vs trained over held-out adversarial prompts, judged by the
independent judge model (never by the model being trained)."""

from __future__ import annotations

import csv
import io

from app import cai, constitution, evaluation
from app.models import LoadedModel, generate


def run(base: LoadedModel, trained: LoadedModel, run_id: str, *, limit: int, max_new_tokens: int, seed: int) -> dict:
    prompts = [p["prompt"] if isinstance(p, dict) else p for p in constitution.adversarial_prompts()][:limit]
    examples, before, after = [], [], []
    for i, prompt in enumerate(prompts):
        texts = [generate(lm, cai.dialogue(prompt), max_new_tokens=max_new_tokens, temperature=0.7, seed=seed + i)
                 for lm in (base, trained)]
        evals = [evaluation.evaluate(t or " ", "judge") for t in texts]
        before.append(evals[0])
        after.append(evals[1])
        examples.append({"prompt": prompt, "base": texts[0], "trained": texts[1],
                         "base_flagged": evals[0]["flagged_principles"], "trained_flagged": evals[1]["flagged_principles"],
                         "base_alignment": evals[0]["alignment_score"], "trained_alignment": evals[1]["alignment_score"]})
    a_before, a_after = evaluation.alignment(before), evaluation.alignment(after)
    r_before, r_after = ({k: round(v, 4) for k, v in evaluation.violation_rates(e).items()} for e in (before, after))
    return {
        "run_id": run_id, "prompts": len(prompts), "judge": "embedding judge (independent of the trained model)",
        "before": {"alignment": round(a_before, 4), "violation_rates": r_before},
        "after": {"alignment": round(a_after, 4), "violation_rates": r_after},
        "change_points": round((a_after - a_before) * 100, 2),
        "relative_improvement": round((a_after - a_before) / a_before, 4) if a_before else None,
        "per_principle": [{"principle": name, "before": r_before[name], "after": r_after[name],
                           "change_points": round((r_before[name] - r_after[name]) * 100, 2)}
                          for name in constitution.NAMES],
        "examples": examples,
        "json_url": f"/api/runs/{run_id}/impact.json", "csv_url": f"/api/runs/{run_id}/impact.csv",
    }


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["prompt", "base", "trained", "base_flagged", "trained_flagged", "base_alignment", "trained_alignment"])
    for ex in report["examples"]:
        writer.writerow([ex["prompt"], ex["base"], ex["trained"], ";".join(ex["base_flagged"]),
                         ";".join(ex["trained_flagged"]), ex["base_alignment"], ex["trained_alignment"]])
    return buf.getvalue()
