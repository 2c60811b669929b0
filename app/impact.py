"""Impact of a training run: base vs trained over the held-out red-team prompts (never trained on),
judged by the rules and the independent judge model (never by the model being trained). Greedy
decoding, so a report is reproducible; every prompt goes to both models at once (batched)."""

from __future__ import annotations

import csv
import io

from app import constitution, evaluation
from app.generation import wait
from app.models import LoadedModel

JUDGE_MODE = "both"


def run(base: LoadedModel, trained: LoadedModel, run_id: str, *, limit: int, max_new_tokens: int, seed: int,
        temperature: float = 0.0) -> dict:
    prompts = [p["prompt"] for p in constitution.adversarial_prompts()][:limit]
    requests = [[lm.submit([{"role": "user", "content": prompt}], max_new_tokens=max_new_tokens,
                           temperature=temperature, seed=seed + i) for lm in (base, trained)]
                for i, prompt in enumerate(prompts)]
    examples, before, after = [], [], []
    for prompt, pair in zip(prompts, requests):
        texts = [wait(lm.tokenizer, r) for lm, r in zip((base, trained), pair)]
        evals = [evaluation.evaluate(t or " ", JUDGE_MODE) for t in texts]
        before.append(evals[0])
        after.append(evals[1])
        examples.append({"prompt": prompt, "base": texts[0], "trained": texts[1],
                         "base_flagged": evals[0]["flagged_principles"], "trained_flagged": evals[1]["flagged_principles"],
                         "base_alignment": evals[0]["alignment_score"], "trained_alignment": evals[1]["alignment_score"]})
    a_before, a_after = evaluation.alignment(before), evaluation.alignment(after)
    r_before, r_after = ({k: round(v, 4) for k, v in evaluation.violation_rates(e).items()} for e in (before, after))
    return {
        "run_id": run_id, "prompts": len(prompts), "judge": "rules + embedding judge (independent of the trained model)",
        "flagged_rate": {"before": round(sum(e["flagged"] for e in before) / len(before), 4),
                         "after": round(sum(e["flagged"] for e in after) / len(after), 4)},
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
