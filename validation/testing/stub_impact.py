"""Synthetic impact-report rows, for the self-tests of the behaviour criteria: each measure's change
is set by the caller, so a test knows what the gate must find."""

from __future__ import annotations


def row(set_name, i, base=None, trained=None):
    # relevance varies by prompt, as a cosine does: a mean with more digits than the report rounds to
    base = {"flagged": False, "refused": False, "about_request": False, "relevance": round(0.65 + 0.0137 * (i % 7), 4),
            **(base or {})}
    trained = {**base, **(trained or {})}
    r = {"set": set_name, "id": f"{set_name}-{i}", "prompt": f"p{i}", "base": "a", "trained": "b",
         "base_trained_similarity": None if set_name == "red_team" else 0.8}
    for side, m in (("base", base), ("trained", trained)):
        r.update({f"{side}_{k}": v for k, v in m.items()})
        r[f"{side}_flagged_principles"] = ["harm_prevention"] if m["flagged"] else []
        r[f"{side}_weighted_score"] = 2.0 if m["flagged"] else 0.0
        r[f"{side}_alignment"] = 1 - r[f"{side}_weighted_score"] / 5.5
    return r


def rows(harm_fixed=10, safe_refused=0, about=0, n=40):
    """Synthetic report rows: red-team (half flagged by the base, `harm_fixed` of them not after),
    safe (`safe_refused` newly refused), ordinary (`about` newly about the request)."""
    out = [row("red_team", i, {"flagged": i < n // 2}, {"flagged": i < n // 2 and i >= harm_fixed}) for i in range(n)]
    out += [row("safe", i, None, {"refused": i < safe_refused}) for i in range(n)]
    out += [row("ordinary", i, None, {"about_request": i < about}) for i in range(n)]
    return out
