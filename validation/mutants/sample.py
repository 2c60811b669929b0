"""`python -m validation.mutants.sample SESSION SIZE SEED`, run by the mutation tool's interpreter:
keep SIZE of the session's mutants and mark the rest skipped (cosmic-ray's own way to filter work).

The sample is drawn over code sites, not over mutants: a site (module and position) is drawn
uniformly, then one of its mutants. Drawing over mutants would spend most of the sample on
arithmetic operators, which cosmic-ray turns into a dozen mutants at every `+`.
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict


def site(item) -> tuple[str, tuple[int, int]]:
    m = item.mutations[0]
    return str(m.module_path), tuple(m.start_pos)


def choose(items: list, size: int, seed: int) -> set[str]:
    """The job ids of `size` mutants (0: all), one per drawn site. Job ids are random per session, so
    the draw goes by site and operator: the same code and seed give the same sample."""
    if not size:
        return {i.job_id for i in items}
    sites: dict[tuple, list] = defaultdict(list)
    for item in items:
        sites[site(item)].append(item)
    rng = random.Random(seed)
    drawn = rng.sample(sorted(sites), min(size, len(sites)))
    return {rng.choice(sorted(sites[s], key=_operator_order)).job_id for s in drawn}


def _operator_order(item) -> tuple[str, int]:
    return item.mutations[0].operator_name, item.mutations[0].occurrence


def main(path: str, size: int, seed: int) -> int:
    from cosmic_ray.work_db import WorkDB, use_db  # the tool's venv has it; the harness, which tests choose(), does not
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(path, WorkDB.Mode.open) as db:
        items = list(db.work_items)
        keep = choose(items, size, seed)
        skip = [i.job_id for i in items if i.job_id not in keep]
        if skip:
            db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    print(f"{len(keep)} of {len(items)} mutants kept, from {len({site(i) for i in items})} code sites")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
