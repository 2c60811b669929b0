"""The HTTP contract, fuzzed: schemathesis against the app's own OpenAPI document.

    result = fuzz(base_url, report_dir / "schemathesis", auth=..., say=print)
    record(gate, result)             # resilience.schema_failures: every unique failure it found

Every phase (examples, coverage, fuzzing, stateful) and every check, with a fixed seed and a bounded
number of cases per operation (fewer for the slow ones: SLOW_OPERATIONS); one worker, so requests
do not queue behind each other's generations. Its own JUnit and NDJSON reports and its console log are kept for the gate's report.
A run that could not test (schema unreachable, a crash) is an error, never a pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from validation.gate import Gate

PHASES = "examples,coverage,fuzzing,stateful"
MAX_EXAMPLES = 10  # cases per operation and phase: about 2 minutes on the app with MAX_NEW_TOKENS_LIMIT=8
# A critique case costs 9-12 s on 2 cores (each round prefills a critique, revisions and a decline):
# at the defaults it took 283 of the run's 371 s. Its valid inputs get the examples and 3 fuzzed
# cases; the coverage phase sends it only invalid ones (the battery and the smoke gate's critique
# checks cover valid ones).
SLOW_OPERATIONS = {"/api/critique": 3}
SEED = 42
WAIT_FOR_SCHEMA_S = 30  # the app may still be starting
REQUEST_TIMEOUT_S = 120.0  # also the response-time limit: a request held longer is a failure
OK_EXIT = (0, 1)  # 0: no failure; 1: failures found (anything else: schemathesis could not run)


class FuzzError(RuntimeError):
    """schemathesis did not run to the end: no verdict."""


@dataclass
class Fuzzed:
    failures: list[str]  # "POST /api/evaluate: ST202", one per unique failure
    operations: int
    cases: int | None
    seconds: float
    reports: dict[str, Path] = field(default_factory=dict)  # what: path


def config(max_examples: int) -> str:
    """schemathesis.toml: `max_examples` cases per operation and phase, fewer for SLOW_OPERATIONS
    (an operation's own setting, which a --max-examples on the command line would override)."""
    text = f"generation.max-examples = {max_examples}\n"
    for path, examples in SLOW_OPERATIONS.items():
        text += (f'\n[[operations]]\ninclude-path = "{path}"\ngeneration.max-examples = {min(examples, max_examples)}\n'
                 'phases.coverage.generation.mode = "negative"\n')
    return text


def command(base_url: str, out: Path, settings: Path, *, auth: tuple[str, str] | None, seed: int,
            wait_for_schema_s: int = WAIT_FOR_SCHEMA_S) -> list[str]:
    """The schemathesis command line; `settings` is its schemathesis.toml (`config`)."""
    base = base_url.rstrip("/")
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(settings), "run",
        f"{base}/api/openapi.json", "--url", base, "--phases", PHASES, "--checks", "all", "--seed", str(seed),
        "--workers", "1", "--request-timeout", str(REQUEST_TIMEOUT_S), "--max-response-time", str(REQUEST_TIMEOUT_S),
        "--generation-database", "none", "--no-color", "--wait-for-schema", str(wait_for_schema_s),
        "--report", "junit,ndjson", "--report-junit-path", str(out / "junit.xml"),
        "--report-ndjson-path", str(out / "events.ndjson"),
    ]
    if auth:
        cmd += ["--auth", f"{auth[0]}:{auth[1]}"]
    return cmd


def fuzz(base_url: str, out: Path, *, auth: tuple[str, str] | None = None, max_examples: int = MAX_EXAMPLES,
         seed: int = SEED, say=print, timeout: float = 1800, wait_for_schema_s: int = WAIT_FOR_SCHEMA_S) -> Fuzzed:
    out.mkdir(parents=True, exist_ok=True)
    log = out / "console.log"
    say(f"schemathesis: {PHASES}, all checks, {max_examples} cases per operation, seed {seed} -> {out}")
    settings = out / "schemathesis.toml"
    settings.write_text(config(max_examples), encoding="utf-8")
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.run(command(base_url, out, settings, auth=auth, seed=seed, wait_for_schema_s=wait_for_schema_s),
                              stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    seconds = time.monotonic() - started
    text = log.read_text(encoding="utf-8", errors="replace")
    junit = out / "junit.xml"
    if proc.returncode not in OK_EXIT or not junit.exists():
        raise FuzzError(f"schemathesis exited {proc.returncode} without a verdict; its log ({log}) ends:\n"
                        + "\n".join(text.splitlines()[-15:]))
    failures, operations = read_junit(junit)
    cases = re.search(r"(\d+) generated", text)
    return Fuzzed(failures, operations, int(cases.group(1)) if cases else None, seconds,
                  {"JUnit": junit, "NDJSON events": out / "events.ndjson", "console": log,
                   "config": settings})


def read_junit(path: Path) -> tuple[list[str], int]:
    """Each <failure> or <error> of each operation's test case, and the number of operations."""
    cases = ET.parse(path).getroot().iter("testcase")
    failures, operations = [], 0
    for case in cases:
        operations += 1
        for bad in [*case.iter("failure"), *case.iter("error")]:
            first = next((line.strip() for line in (bad.text or "").splitlines() if line.strip().startswith("- ")), "")
            failures.append(f"{case.get('name')}: {first.removeprefix('- ') or bad.get('message') or bad.tag}")
    return failures, operations


def record(gate: Gate, result: Fuzzed) -> None:
    shown = "; ".join(result.failures[:5]) + (f"; … {len(result.failures) - 5} more" if len(result.failures) > 5 else "")
    gate.measure(
        "resilience.schema_failures",
        len(result.failures),
        detail=f"{result.operations} operations, {result.cases or '?'} cases in {result.seconds:.0f} s"
        + (f": {shown}" if result.failures else ""),
    )
