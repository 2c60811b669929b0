"""Image structure (container-structure-test style): its config and the files in it."""

from __future__ import annotations

import json

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
    """User, exposed port, exec-form entrypoint and HEALTHCHECK from `docker image inspect`."""
    cfg = attrs.get("Config") or {}
    user = cfg.get("User") or ""
    gate.measure("image.user", user, detail=f"Config.User={user!r}" + (" (defaults to root)" if not user else ""), soft=True)
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
