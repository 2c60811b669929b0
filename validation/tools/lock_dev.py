"""Write requirements/dev.lock: the pinned closure of requirements/dev.in, read from an installed venv.

    .venv/bin/python -m validation.tools.lock_dev          # from the repo root, in the dev venv

pip-tools is not needed: the closure is walked through the installed distributions' metadata
(Requires-Dist, markers evaluated for this interpreter, no extras). Versions must agree with
requirements/app.lock for packages in both; a mismatch is an error.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQ = Path(__file__).resolve().parents[2] / "requirements"


def names(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(Requirement(line).name)
    return out


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if m:
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def closure(roots: list[str]) -> dict[str, str]:
    env = default_environment()
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist.version
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker and not req.marker.evaluate({**env, "extra": ""}):
                continue
            todo.append(req.name)
    return seen


def main() -> int:
    found = closure(names(REQ / "dev.in"))
    app = pins(REQ / "app.lock") if (REQ / "app.lock").exists() else {}
    clash = {n: (v, app[n]) for n, v in found.items() if n in app and app[n].split("+")[0] != v.split("+")[0]}
    if clash:
        print(f"dev and app locks disagree: {clash}", file=sys.stderr)
        return 1
    lines = [
        "# requirements/dev.lock: the validation harness and test tools, fully pinned (closure of dev.in).",
        "# Installed with `pip install --no-deps -r requirements/dev.lock` next to app.lock (nox does this).",
        "# Made by `python -m validation.tools.lock_dev` from the dev venv (Python 3.11, Linux x86_64);",
        "# packages also in app.lock have the same version there (checked when this file is written).",
    ]
    lines += [f"{n}=={v.split('+')[0]}" for n, v in sorted(found.items())]
    (REQ / "dev.lock").write_text("\n".join(lines) + "\n")
    print(f"wrote {REQ / 'dev.lock'}: {len(found)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
