"""The benchmark record: reports/benchmark.{md,json}, written by `nox -s perf -- --profile bench`
(the gpt2-sized model, quick training under the plan's load). Each number with the command that
reproduces it; the README quotes these."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from validation.perf.judge import GENERATE, JUDGE, RULES

GB = 2**30


def _cmd(target: dict) -> str:
    kind = target.get("kind")
    if kind == "url":
        return f"nox -s perf -- --profile bench --base-url {target.get('base_url')}"
    extra = f" --image {target['image']}" if kind == "container" and target.get("image") else ""
    return f"nox -s perf -- --profile bench --target {kind}{extra}"


def write_benchmark(reports_root: Path, bench: dict, gate=None) -> list[Path]:
    """reports/benchmark.md (a table: measure, value, unit, the command that reproduces it) and .json."""
    t = bench.get("target", {})
    cmd = _cmd(t)
    rows = [(n, round(v, 3) if isinstance(v, float) else v, u, cmd) for n, v, u in _rows(bench)]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    params = bench["params"]
    lines = [
        "# Benchmark record (gpt2-sized)",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- target: `{t.get('kind')}` {t.get('image') or t.get('base_url') or ''}",
        f"- machine: {machine}",
        f"- profile: `{params['profile']}`; load {params['budget']} requests, {params['users']} users",
        f"- reproduce everything: `{cmd}`",
        "",
        "| measure | value | unit | reproduce |",
        "|---|---|---|---|",
        *(f"| {name} | {value if value is not None else '—'} | {unit} | `{c}` |" for name, value, unit, c in rows),
    ]
    md, js = reports_root / "benchmark.md", reports_root / "benchmark.json"
    reports_root.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines) + "\n")
    rows_json = [dict(zip(("measure", "value", "unit", "command"), r)) for r in rows]
    js.write_text(json.dumps({"command": cmd, "machine": machine, "rows": rows_json, "raw": bench}, indent=1,
                             default=str) + "\n")
    return [md, js]


def _rows(bench: dict) -> list[tuple[str, object, str]]:
    """(measure, value, unit) of the benchmark's table."""
    eps = bench.get("load", {}).get("endpoints", {})
    res, train, idle, params = bench.get("resources", {}), bench.get("training") or {}, bench.get("idle", {}), bench["params"]

    def ep(prefix):
        return next((e for name, e in eps.items() if name.startswith(prefix)), {})

    def p50_p95(e):
        return " / ".join(str(None if not e or e.get(k) is None else round(e[k], 3)) for k in ("p50_s", "p95_s"))

    peak = res.get("whole", {}).get("memory_peak_bytes")
    return [
        ("time to healthy (start -> GET /health 200)", bench.get("health_s"), "s"),
        (f"model load ({'; '.join(filter(None, [params['model'], bench.get('model_load_note')]))})",
         bench.get("model_load_s"), "s"),
        ("rules evaluation, idle, p50 (5 sequential)", (idle.get("evaluate_rules") or {}).get("p50_s"), "s"),
        ("judge evaluation, idle, p50 (5 sequential)", (idle.get("evaluate_judge") or {}).get("p50_s"), "s"),
        (f"generation {params['gen_tokens']} tokens, idle, p50 (5 sequential)", (idle.get("generate") or {}).get("p50_s"), "s"),
        (f"rules evaluation under load, p50 / p95 ({params['users']} users)", p50_p95(ep(RULES)), "s"),
        ("judge evaluation under load, p50 / p95", p50_p95(ep(JUDGE)), "s"),
        ("generation under load (base vs trained), p50 / p95", p50_p95(ep(GENERATE)), "s"),
        (f"`{train.get('preset')}` training under load, wall time", train.get("seconds"), "s"),
        ("peak memory (load + training)", peak and round(peak / GB, 3), "GB"),
        ("CPU mean during the load", (res.get("load") or {}).get("cpu_mean"), "% of cores"),
    ]
