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
    t = bench.get("target", {})
    cmd = _cmd(t)
    load = bench.get("load", {})
    eps = load.get("endpoints", {})
    res = bench.get("resources", {})
    train = bench.get("training") or {}

    def ep(prefix):
        for name, e in eps.items():
            if name.startswith(prefix):
                return e
        return {}

    def pct(e, k):
        return None if not e or e.get(k) is None else round(e[k], 3)

    rules, judge_, gen = ep(RULES), ep(JUDGE), ep(GENERATE)
    idle = bench.get("idle", {})
    whole = res.get("whole", {})
    rows = [
        ("time to healthy (start -> GET /health 200)", bench.get("health_s"), "s", cmd),
        (
            f"model load ({bench['params']['model']})",
            bench.get("model_load_s"),
            "s",
            cmd + "  # " + str(bench.get("model_load_note", "")),
        ),
        ("rules evaluation, idle, p50 (5 sequential)", (idle.get("evaluate_rules") or {}).get("p50_s"), "s", cmd),
        ("judge evaluation, idle, p50 (5 sequential)", (idle.get("evaluate_judge") or {}).get("p50_s"), "s", cmd),
        (
            f"generation {bench['params']['gen_tokens']} tokens, idle, p50 (5 sequential)",
            (idle.get("generate") or {}).get("p50_s"),
            "s",
            cmd,
        ),
        (
            f"rules evaluation under load, p50 / p95 ({bench['params']['users']} users)",
            f"{pct(rules, 'p50_s')} / {pct(rules, 'p95_s')}",
            "s",
            cmd,
        ),
        ("judge evaluation under load, p50 / p95", f"{pct(judge_, 'p50_s')} / {pct(judge_, 'p95_s')}", "s", cmd),
        ("generation under load (base vs trained), p50 / p95", f"{pct(gen, 'p50_s')} / {pct(gen, 'p95_s')}", "s", cmd),
        (f"`{train.get('preset')}` training under load, wall time", train.get("seconds"), "s", cmd),
        (
            "peak memory (load + training)",
            whole.get("memory_peak_bytes") and round(whole["memory_peak_bytes"] / GB, 3),
            "GB",
            cmd,
        ),
        ("CPU mean during the load", (res.get("load") or {}).get("cpu_mean"), "% of cores", cmd),
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    lines = [
        "# Benchmark record (gpt2-sized)",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- target: `{t.get('kind')}` {t.get('image') or t.get('base_url') or ''}",
        f"- machine: {machine}",
        f"- profile: `{bench['params']['profile']}`; load {bench['params']['budget']} requests, {bench['params']['users']} users",
        f"- reproduce everything: `{cmd}`",
        "",
        "| measure | value | unit | reproduce |",
        "|---|---|---|---|",
    ]
    rows = [(n, round(v, 3) if isinstance(v, float) else v, u, c) for n, v, u, c in rows]
    for name, value, unit, c in rows:
        lines.append(f"| {name} | {value if value is not None else '—'} | {unit} | `{c}` |")
    md = reports_root / "benchmark.md"
    js = reports_root / "benchmark.json"
    reports_root.mkdir(parents=True, exist_ok=True)
    md.write_text("\n".join(lines) + "\n")
    js.write_text(
        json.dumps(
            {
                "command": cmd,
                "machine": machine,
                "rows": [dict(zip(("measure", "value", "unit", "command"), r)) for r in rows],
                "raw": bench,
            },
            indent=1,
            default=str,
        )
        + "\n"
    )
    return [md, js]
