"""The mutants session's own logic (validation/mutants): the sample, the mutated module's detection,
the verdicts, and that a survivor nobody explained fails the session."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from validation import criteria
from validation.mutants import kill, sample
from validation.mutants.test_mutants import REPO, SURVIVORS, key, summarise, verdict


@dataclass
class Spec:
    module_path: str
    operator_name: str
    occurrence: int
    start_pos: tuple[int, int]


@dataclass
class Item:
    job_id: str
    mutations: tuple[Spec, ...]


def _items(job_prefix: str) -> list[Item]:
    """Three sites: one with twelve mutants (an arithmetic operator), two with one each."""
    ops = [f"core/ReplaceBinaryOperator_Add_{k}" for k in range(12)]
    return ([Item(f"{job_prefix}{i}", (Spec("app/a.py", op, 0, (10, 4)),)) for i, op in enumerate(ops)]
            + [Item(f"{job_prefix}x", (Spec("app/a.py", "core/AddNot", 0, (20, 0)),)),
               Item(f"{job_prefix}y", (Spec("app/b.py", "core/AddNot", 0, (5, 0)),))])


def _chosen_specs(items: list[Item], size: int, seed: int) -> set[tuple]:
    ids = sample.choose(items, size, seed)
    return {(m.module_path, m.operator_name, m.start_pos) for i in items if i.job_id in ids for m in i.mutations}


def test_the_sample_is_one_mutant_per_site_and_fixed_by_the_seed():
    first = _chosen_specs(_items("a"), 3, seed=0)
    assert len(first) == 3 and len({(m, pos) for m, _, pos in first}) == 3  # every site once, not 3 of the `+`
    assert _chosen_specs(_items("other-random-ids-"), 3, seed=0) == first  # job ids are random per session
    assert len(_chosen_specs(_items("a"), 0, seed=0)) == 14  # 0: every mutant
    assert len(_chosen_specs(_items("a"), 14, seed=5)) == 3  # never two of one site


def test_the_mutated_module_is_found_by_content(tmp_path):
    for m in kill.MODULES:
        (tmp_path / m).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / m).write_bytes((REPO / m).read_bytes())
    assert kill.mutated(tmp_path, REPO) is None
    (tmp_path / "app/impact.py").write_text((REPO / "app/impact.py").read_text().replace(" + ", " - ", 1))
    assert kill.mutated(tmp_path, REPO) == "app/impact.py"


def test_every_module_and_its_tests_exist():
    for module, tests in kill.MODULES.items():
        assert (REPO / module).is_file(), module
        assert all(t in kill.UNIT_TESTS and (REPO / t).is_file() for t in tests), module


def _run(outcome: str, output: str, line: int = 1) -> dict:
    return {"module": "app/stats.py", "operator": "core/AddNot", "occurrence": 0, "line": line, "column": 4,
            "source": "x = 1", "function": "f", "outcome": outcome, "worker": "NORMAL", "diff": "", "output": output}


def test_a_survivor_without_a_reason_is_unexplained():
    runs = [_run("KILLED", "...\nkilled by unit test tests/test_behaviour.py::test_x"), _run("SURVIVED", "survived ...")]
    got = summarise(runs, {})
    assert got["kill_rate"] == 50.0 and got["unexplained"] == [key(runs[1])]
    assert summarise(runs, {key(runs[1]): "a log line"})["unexplained"] == []


def test_the_kill_rate_is_judged_on_its_interval():
    """A sample of three: one killed passes (its interval reaches 79 %), none killed fails (56 %)."""
    rule = criteria.load("plan")["mutants.kill_rate"]
    one = summarise([_run("KILLED", "killed by unit test t"), _run("SURVIVED", "s"), _run("SURVIVED", "s")], {})
    none = summarise([_run("SURVIVED", "s")] * 3, {})
    assert criteria.compare(rule, one["kill_rate_ci95"][1]) and not criteria.compare(rule, none["kill_rate_ci95"][1])
    assert one["kill_rate"] == 33.3 and "95 % interval 6-79 %" in one["detail"]


def test_an_incompetent_mutant_is_not_counted_killed():
    runs = [_run("INCOMPETENT", "Traceback ..."), _run("KILLED", "timeout")]
    got = summarise(runs, {})
    assert got["kill_rate"] == 50.0 and "1 incompetent" in got["detail"]
    assert verdict(runs[1]) == "killed by the timeout (a hang)" and verdict(runs[0]).startswith("INCOMPETENT")


def test_every_explained_survivor_names_a_line_that_exists():
    """A reason for a line that changed no longer explains anything: say it again for the new line."""
    for name, reason in tomllib.loads(SURVIVORS.read_text())["harmless"].items():
        module, function, operator, line = name.split("::", 3)
        assert reason.strip(), name
        assert line in (l.strip() for l in (REPO / module).read_text().splitlines()), f"stale: {name}"
        assert re.fullmatch(r"core/\w+@\d+", operator) and function, name
