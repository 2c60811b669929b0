"""`nox -s mutants`: mutation testing of the modules that decide what a user sees.

cosmic-ray (in its own venv, requirements/mutants.lock) makes every one-change mutant of the modules
in kill.MODULES, a fixed sample of them is kept (sample.py: over code sites), and each is run
through kill.py: the unit tests, then the smoke gate on `tiny`. All of it happens in a copy of the
tree under the report folder, because the tool mutates files in place.

    nox -s mutants                            # 3 mutants, what CI runs (a few minutes)
    nox -s mutants -- --mutants-sample 40     # the sample docs/measurements.md quotes (about an hour)
    nox -s mutants -- --mutants-sample 0      # every mutant (days)

reports/mutants/mutants.md lists each mutant: killed by which check, or survived, with the reason it
is harmless when survivors.toml gives one. A survivor without a reason fails `mutants.unexplained`:
kill it with a new check, or say in survivors.toml why no user can tell it from the original.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from validation.mutants.kill import MODULES

pytestmark = pytest.mark.mutants

REPO = Path(__file__).resolve().parents[2]
SURVIVORS = Path(__file__).with_name("survivors.toml")


def copy_tree(dest: Path) -> None:
    """The tree as git sees it (tracked and new files, not ignored ones), with the model caches linked:
    what the first run builds, the next ones reuse."""
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for models in ("demo/models", ".cache/models"):  # the app's and the unit tests' model caches
        (REPO / models).mkdir(parents=True, exist_ok=True)
        (dest / models).parent.mkdir(parents=True, exist_ok=True)
        (dest / models).symlink_to(REPO / models)


def config(timeout: float) -> str:
    modules = ", ".join(f'"{m}"' for m in MODULES)
    return (f"[cosmic-ray]\nmodule-path = [{modules}]\ntimeout = {timeout}\nexcluded-modules = []\n"
            f'test-command = "{sys.executable} -m validation.mutants.kill"\n\n[cosmic-ray.distributor]\nname = "local"\n')


def mutants(db: Path, tree: Path) -> list[dict]:
    """Every run mutant of the session: where, what, the line it changed (read from `tree`, the copy
    it ran in, which the tool restores after each mutant), its diff and the checks' last word."""
    found = sorted(_results(db), key=lambda m: (m["module"], m["line"], m["operator"]))
    for m in found:
        m["source"] = (tree / m["module"]).read_text().splitlines()[m["line"] - 1].strip()
    return found


def _results(db: Path) -> list[dict]:
    """The session database's run mutants (not the sample's skipped ones), in the order they ran."""
    keys = ("module", "operator", "occurrence", "line", "column", "function", "outcome", "worker", "diff", "output")
    with sqlite3.connect(db) as c:
        rows = c.execute("select s.module_path, s.operator_name, s.occurrence, s.start_pos_row, s.start_pos_col, "
                         "s.definition_name, r.test_outcome, r.worker_outcome, r.diff, r.output from mutation_specs s "
                         "join work_results r on r.job_id = s.job_id where r.worker_outcome != 'SKIPPED' "
                         "order by r.rowid").fetchall()
    return [dict(zip(keys, r)) for r in rows]


def key(m: dict) -> str:
    """A survivor's name in survivors.toml: module, function, operator with the column it starts at, and
    the line it changes (stable while that line is)."""
    return f"{m['module']}::{m['function'] or '<module>'}::{m['operator']}@{m['column']}::{m['source']}"


def verdict(m: dict) -> str:
    """The checks' last word on a mutant ("killed by ...", "survived ..."), or what the tool says."""
    out = (m["output"] or "").strip()
    if out == "timeout":
        return "killed by the timeout (a hang)"
    return out.splitlines()[-1] if out and m["outcome"] != "INCOMPETENT" else f"{m['outcome']}: {out[-200:]}"


def test_mutants(gate, pytestconfig, say, report_dir):
    gate.require(["mutants.control", "mutants.kill_rate", "mutants.unexplained"])
    tool = Path(os.environ.get("GATE_MUTATION_TOOL", ""))
    if not (tool / "cosmic-ray").exists():
        pytest.fail(f"GATE_MUTATION_TOOL={str(tool)!r} holds no cosmic-ray: run this through `nox -s mutants`, "
                    "which makes that venv from requirements/mutants.lock")
    size, seed = pytestconfig.getoption("--mutants-sample"), pytestconfig.getoption("--mutants-seed")
    work, db = report_dir / "work", report_dir / "session.sqlite"
    copy_tree(work)
    db.unlink(missing_ok=True)
    (work / "cosmic-ray.toml").write_text(config(pytestconfig.getoption("--mutants-timeout")))
    env = {**os.environ, "GATE_MUTANTS_SOURCE": str(REPO)}
    say("mutants: the checks on the unmutated copy first (they must pass, or every kill proves nothing)")
    control = subprocess.run([sys.executable, "-m", "validation.mutants.kill"], cwd=work, env=env, capture_output=True, text=True)
    gate.measure("mutants.control", control.returncode == 0, detail=(control.stdout.strip().splitlines() or ["no output"])[-1])
    subprocess.run([str(tool / "cosmic-ray"), "init", "cosmic-ray.toml", str(db)], cwd=work, check=True, env=env)
    sampled = subprocess.run([str(tool / "python"), "-m", "validation.mutants.sample", str(db), str(size), str(seed)],
                             cwd=work, check=True, env=env, capture_output=True, text=True).stdout.strip()
    say(f"mutants: {sampled} (seed {seed})")
    done = threading.Event()
    progress = threading.Thread(target=_progress, args=(db, say, done), daemon=True)
    progress.start()
    try:
        subprocess.run([str(tool / "cosmic-ray"), "exec", "cosmic-ray.toml", str(db)], cwd=work, check=True, env=env)
    finally:
        done.set()
        progress.join()

    runs = mutants(db, work)
    _write_report(report_dir, runs, harmless())
    gate.attach(report_dir / "mutants.md", "each mutant: killed by which check, or survived and why that is harmless")
    summary = summarise(runs, harmless())
    gate.measure("mutants.kill_rate", summary["kill_rate_ci95"][1], soft=True,
                 detail=f"{summary['detail']} in a sample of {size or 'all'}, seed {seed}")
    gate.measure("mutants.unexplained", summary["unexplained"], detail=summary["explained"])


def harmless() -> dict[str, str]:
    return tomllib.loads(SURVIVORS.read_text())["harmless"]


def summarise(runs: list[dict], reasons: dict[str, str]) -> dict:
    """The kill rate and its 95 % interval over the sample, the survivors with no reason, a line on each."""
    survivors = [m for m in runs if m["outcome"] == "SURVIVED"]
    unexplained = [key(m) for m in survivors if key(m) not in reasons]
    killed = sum(m["outcome"] == "KILLED" for m in runs)
    lo, hi = wilson(killed, len(runs))
    return {"kill_rate": round(100.0 * killed / len(runs), 1) if runs else 0.0, "kill_rate_ci95": [lo, hi],
            "unexplained": unexplained,
            "detail": f"{killed} of {len(runs)} mutants killed (95 % interval {lo:.0f}-{hi:.0f} %; {len(survivors)} survived, "
                      f"{len(runs) - killed - len(survivors)} incompetent)",
            "explained": f"{len(survivors) - len(unexplained)} of {len(survivors)} survivors explained in {SURVIVORS.name}"}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of k in n, in %: a sample of a few mutants says little, and this says how little."""
    if n == 0:
        return 0.0, 100.0
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return round(100 * max(0.0, mid - half), 1), round(100 * min(1.0, mid + half), 1)


def _progress(db: Path, say, done: threading.Event) -> None:
    """A line each time a mutant's verdict is in (cosmic-ray itself prints nothing until the end)."""
    seen = 0
    while not done.wait(5):
        try:
            rows = _results(db)
        except sqlite3.Error:
            continue
        for m in rows[seen:]:
            last = (m["output"] or "").strip().splitlines()[-1:] or [str(m["outcome"])]
            say(f"mutant {seen + 1}: {m['module']}:{m['line']} {m['operator'].removeprefix('core/')}: {last[0][:140]}")
            seen += 1


def _write_report(report_dir: Path, runs: list[dict], reasons: dict[str, str]) -> None:
    lines = ["# Mutants", "", "| module:line | function | operator | verdict | harmless because |", "|---|---|---|---|---|"]
    for m in runs:
        why = reasons.get(key(m), "**not explained**") if m["outcome"] == "SURVIVED" else ""
        lines.append(f"| `{m['module']}:{m['line']}` | `{m['function']}` | {m['operator'].removeprefix('core/')} "
                     f"| {verdict(m)} | {why} |")
    lines += ["", "## Survivors' diffs", ""]
    for m in (m for m in runs if m["outcome"] == "SURVIVED"):
        lines += [f"`{key(m)}`", "", "```diff", (m["diff"] or "").strip(), "```", ""]
    (report_dir / "mutants.md").write_text("\n".join(lines) + "\n")
    (report_dir / "mutants.json").write_text(json.dumps([{k: v for k, v in m.items() if k != "output"} | {"verdict": verdict(m)}
                                                         for m in runs], indent=2))
