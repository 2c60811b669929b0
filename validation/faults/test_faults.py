"""`nox -s faults`: the gate must catch every fault of the catalogue (validation/faults/catalogue.py).

For each fault: the fault's session runs (its tests that can see the fault, `Fault.tests`) against
the real app started through validation/faults/inject.py on the process target with `tiny`, and
the failed criteria are read from that run's report.json. First a control run: the same tests on
the same app without a fault must pass, and every criterion the chosen faults expect to catch them
must be measured and pass there (a skipped or unmeasured one could not go red), else a "caught"
fault would prove nothing. Runs go two at a time (`--fault-workers`), controls included: each run's
app mostly waits on its client and the other way round, so two halve the session on two cores.

    nox -s faults                          # the whole catalogue
    nox -s faults -- --faults cancel_ignored,ready_lies

reports/faults/faults.md: fault -> caught by (criterion) -> time; each run's own report beside it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from validation import session_run
from validation.faults.catalogue import FAULTS, Fault

pytestmark = pytest.mark.faults



def _chosen(pytestconfig) -> list[Fault]:
    names = [n for n in (pytestconfig.getoption("--faults") or "").split(",") if n]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise pytest.UsageError(f"--faults: unknown {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    if names:
        return [FAULTS[n] for n in names]
    return [f for f in FAULTS.values() if f.model == "tiny" or pytestconfig.getoption("--behaviour-faults")]


def _parallel(workers: int, calls: list[tuple], done=lambda i, res: None) -> list[dict]:
    """`session_run.run(*call)` for each call, `workers` at a time; `done(i, result)` as each ends (progress),
    results in the calls' order."""
    def one(i: int) -> dict:
        res = session_run.run(*calls[i])
        done(i, res)
        return res
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(calls))))


def control_problems(needed: list[str], results: list[dict]) -> tuple[list[str], list[str]]:
    """What makes a control run (the unfaulted app) unfit to prove anything: (problems, skipped).

    `results` are the run's report.json results, `needed` the criteria its faults expect to catch
    them. A problem is any criterion that failed, and any needed criterion that did not pass:
    skipped (a fault it should catch could not turn it red) or not measured at all. `skipped` names
    the needed criteria that were skipped, with the reason."""
    failed = list(dict.fromkeys(r["id"] for r in results if r.get("verdict") == "fail"))
    passed = {r["id"] for r in results if r.get("verdict") == "pass"}
    reasons = {r["id"]: r.get("reason", "") for r in results if r.get("verdict") == "skip"}
    skipped = [f"{c} ({reasons[c]})" if reasons[c] else c for c in needed if c in reasons and c not in passed and c not in failed]
    missing = [c for c in needed if c not in passed and c not in failed and c not in reasons]
    problems = [f"{what} {', '.join(ids)}" for what, ids in
                (("failed", failed), ("skipped", skipped), ("not measured", missing)) if ids]
    return problems, skipped


def changed_verdicts(first: list[dict], again: list[dict]) -> list[str]:
    """Criteria whose verdict differs between two runs of the same tests on the same app: each
    `id first -> again` ("absent" where one run has no verdict)."""
    a, b = ({r["id"]: r.get("verdict") for r in rs} for rs in (first, again))
    return [f"{c} {a.get(c, 'absent')} -> {b.get(c, 'absent')}" for c in dict.fromkeys([*a, *b]) if a.get(c) != b.get(c)]


def judge(f: Fault, res: dict) -> dict:
    """A fault is caught when one of the criteria it names failed in its run (another criterion
    failing instead does not count: the gate must say what is broken)."""
    hits = [c for c in f.expect if c in res["failed"]]
    return {"fault": f.name, "bug": f.bug, "session": f.session, "expected": list(f.expect), "caught_by": hits,
            "also_failed": [c for c in res["failed"] if c not in f.expect], "seconds": round(res["seconds"], 1),
            "ended": res["ended"], "detail": res["failed"][hits[0]] if hits else ""}


def test_every_fault_is_caught(gate, pytestconfig, say, report_dir):
    faults = _chosen(pytestconfig)
    profile = pytestconfig.getoption("--profile")
    root = report_dir
    gate.require(["faults.control", "faults.uncaught", "faults.control_repeatable"])

    # Control: every (session, tests) the chosen faults use, without a fault, must pass, and every
    # criterion they expect to catch a fault must be measured (and pass) there.
    selections: dict[tuple[str, str], list[str]] = {}
    needed: dict[tuple[str, str], dict[str, None]] = {}  # (session, model) -> the criteria its faults expect
    for f in faults:
        selections.setdefault((f.session, f.model), []).append(f"({f.tests})")
        needed.setdefault((f.session, f.model), {}).update(dict.fromkeys(f.expect))
    workers = max(1, pytestconfig.getoption("--fault-workers"))
    problems = []
    names = {key: key[0] if key[1] == "tiny" else f"{key[0]}-{key[1]}" for key in selections}
    # The controls run side by side as the faults do, so a criterion that only load turns red shows here.
    def run_controls(suffix: str = "") -> list[dict]:
        return _parallel(workers, [(s, " or ".join(dict.fromkeys(t)), root / f"control-{names[s, m]}{suffix}", None, m,
                                    profile) for (s, m), t in selections.items()])

    controls = run_controls()
    for ((session, model), res) in zip(selections, controls, strict=True):
        name = names[session, model]
        found, skipped = control_problems(list(needed[(session, model)]), res["results"])
        say(f"control {name}: {len(res['passed'])} criteria passed, {len(res['failed'])} failed, "
            f"{res['seconds']:.0f} s ({res['ended']})" + (f"; needed but skipped: {', '.join(skipped)}" if skipped else ""))
        if found:
            problems.append(f"{name} ({res['ended']}): " + "; ".join(found))
    gate.measure("faults.control", not problems,
                 detail="; ".join(problems) or f"the unfaulted app passes {', '.join(s for s, _ in selections)}, measuring all "
                 f"{sum(map(len, needed.values()))} criteria the faults expect")

    def said(i: int, res: dict) -> None:
        row = judge(faults[i], res)
        others = f" (also {', '.join(row['also_failed'])})" if row["also_failed"] else ""
        say(f"{'caught  ' if row['caught_by'] else 'MISSED  '} {row['fault']:26} by {', '.join(row['caught_by']) or '-'}"
            f"{others}  {row['seconds']:.0f} s")

    runs = _parallel(workers, [(f.session, f.tests, root / f.name, f.name, f.model, profile) for f in faults], said)
    rows = [judge(f, res) for f, res in zip(faults, runs, strict=True)]

    # The controls once more, after every fault: a check whose verdict changes between two runs of the
    # same app is flaky, and a flaky gate is rerun until green.
    changed = [f"{names[key]}: {c}" for key, first, again in zip(selections, controls, run_controls("-again"), strict=True)
               for c in changed_verdicts(first["results"], again["results"])]
    gate.measure("faults.control_repeatable", changed,
                 detail="; ".join(changed) or f"the controls run again after the faults give the same verdict on every "
                 f"criterion ({sum(len(c['results']) for c in controls)})", soft=True)
    uncaught = [r["fault"] for r in rows if not r["caught_by"]]

    table = ["| fault | the bug | session | caught by (criterion) | also failed | time |", "|---|---|---|---|---|---|"]
    for r in rows:
        by = ", ".join(f"`{c}`" for c in r["caught_by"]) or f"**not caught** (expected {', '.join(r['expected'])}; {r['ended']})"
        table.append(f"| `{r['fault']}` | {r['bug']} | {r['session']} | {by} | {', '.join(r['also_failed']) or '—'} "
                     f"| {r['seconds']:.0f} s |")
    (root / "faults.md").write_text("# Fault catalogue\n\n" + "\n".join(table) + "\n")
    (root / "faults.json").write_text(json.dumps(rows, indent=2))
    gate.attach(root / "faults.md", "fault -> caught by (criterion) -> time")
    gate.measure("faults.uncaught", uncaught,
                 detail=f"{len(rows) - len(uncaught)} of {len(rows)} faults caught"
                 + (f"; not caught: {', '.join(uncaught)}" if uncaught else ""), soft=True)
    gate.raise_pending()
