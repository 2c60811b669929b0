"""Image structure (container-structure-test style): its config, the files in it, and the user its
server really runs as."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from validation.checks.common import (
    _short,
)
from validation.gate import Gate


def _entrypoint_is_exec(cfg: dict) -> tuple[bool, str]:
    ep, cmd = cfg.get("Entrypoint"), cfg.get("Cmd")
    first = ep if ep else cmd
    shown = json.dumps({"Entrypoint": ep, "Cmd": cmd})
    if not first or not isinstance(first, list):
        return False, f"no entrypoint: {shown}"
    if first[0] in ("/bin/sh", "sh", "/bin/bash", "bash") and "-c" in first[1:2]:
        return False, f"shell form: {shown}"
    return True, shown


def image_config(gate: Gate, attrs: dict) -> None:
    """Exposed port, exec-form entrypoint and HEALTHCHECK from `docker image inspect` (the user: server_user)."""
    cfg = attrs.get("Config") or {}
    ports = sorted((cfg.get("ExposedPorts") or {}).keys())
    gate.measure("image.exposed_port", ports, detail="Config.ExposedPorts", soft=True)
    ok, shown = _entrypoint_is_exec(cfg)
    gate.measure("image.entrypoint_exec", ok, detail=shown, soft=True)
    hc = (cfg.get("Healthcheck") or {}).get("Test") or []
    has_hc = bool(hc) and hc[0] != "NONE"
    gate.measure("image.healthcheck", has_hc, detail=f"Healthcheck.Test={_short(json.dumps(hc), 120)}", soft=True)
    gate.raise_pending()


BUILD_TOOLS_NOT_ALLOWED = ("gcc", "cc", "g++", "c++", "clang", "make", "cmake", "ld", "as")
EXCLUDED_PATHS = (  # under /app, in the image as built (the volumes under /app/demo are empty there)
    ".git",
    "tests",
    ".venv",
    "venv",
    ".nox",
    "wheelhouse",
    "reports",
    ".pytest_cache",
    ".ruff_cache",
    "validation",
    ".ci",
    "node_modules",
    ".env",
)


def image_files(gate: Gate, run_sh) -> None:
    """No compilers on PATH and no excluded paths under /app, by a shell in the image."""
    probe = (
        "for c in " + " ".join(BUILD_TOOLS_NOT_ALLOWED) + "; do command -v $c >/dev/null 2>&1 && echo TOOL:$c; done; "
        "for p in " + " ".join(EXCLUDED_PATHS) + "; do [ -e /app/$p ] && echo PATH:$p; done; "
        "echo DONE"
    )
    code, out = run_sh(probe)
    if "DONE" not in out:
        gate.fail("image.compilers", None, f"probe shell in the image failed (exit {code}): {_short(out)}")
    tools = [ln.split(":", 1)[1] for ln in out.splitlines() if ln.startswith("TOOL:")]
    paths = [ln.split(":", 1)[1] for ln in out.splitlines() if ln.startswith("PATH:")]
    gate.measure("image.compilers", tools, detail="command -v " + " ".join(BUILD_TOOLS_NOT_ALLOWED), soft=True)
    gate.measure("image.excluded_paths", paths, detail="checked under /app: " + " ".join(EXCLUDED_PATHS), soft=True)
    gate.raise_pending()


# Every process whose command line has `-m app` (the server: python -m app), with its Uid line
# (real, effective, saved, filesystem uid). Plain sh + grep + tr: works in any Debian-based image.
# The pattern is spelt through variables so the probe's own command line does not match it.
SERVER_PROBE = (
    "m=-m; a=app; for d in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $d/cmdline 2>/dev/null) || continue; "
    'case " $c" in *" $m $a "*) echo "PROC ${d#/proc/} $(grep ^Uid: $d/status | tr -s \'\\t \' \' \') :: $c";; esac; '
    "done; echo DONE"
)


def parse_server_processes(out: str) -> list[dict]:
    """SERVER_PROBE's output -> [{"pid", "uids": [real, effective, saved, fs], "cmd"}]."""
    procs = []
    for line in out.splitlines():
        if not line.startswith("PROC "):
            continue
        head, _, cmd = line.partition(" :: ")
        parts = head.split()  # PROC <pid> Uid: r e s f
        if len(parts) >= 7 and parts[2] == "Uid:":
            procs.append({"pid": int(parts[1]), "uids": [int(u) for u in parts[3:7]], "cmd": cmd.strip()})
    return procs


def server_user(
    gate: Gate,
    exec_sh: Callable[[str], tuple[int | None, str]],
    logs: Callable[[], str] = lambda: "",
    where: str = "the container",
    timeout: float = 30.0,
) -> None:
    """image.user: the uid the server process (`python -m app`) runs as, read from /proc in the running
    container (real, effective and saved uid; any of them 0 counts as root). exec_sh(cmd) -> (exit code,
    output), exit code None once the container is gone. Waits up to `timeout` s for the process."""
    deadline = time.monotonic() + timeout
    while True:
        code, out = exec_sh(SERVER_PROBE)
        procs = parse_server_processes(out)
        if procs or code is None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not procs:
        why = "the container stopped" if code is None else f"none within {timeout:.0f} s"
        tail = "\n".join(logs().splitlines()[-8:])
        gate.fail("image.user", None,
                  f"no server process (`python -m app`) in {where}: {why} (probe: {_short(out)}); log tail: {_short(tail, 400)}")
    worst = min(u for p in procs for u in p["uids"][:3])
    shown = "; ".join(f"pid {p['pid']} uid real/effective/saved {'/'.join(map(str, p['uids'][:3]))}: {_short(p['cmd'], 60)}"
                      for p in procs)
    gate.measure("image.user", str(worst), detail=f"{where}: {shown}")
