"""Measured values against criteria -> rows -> report.json, report.md and the terminal table.

Pure functions (no pytest): unit-tested in tests/test_gate_logic.py. JUnit XML is pytest's own
(--junitxml), written next to these files by the plugin.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validation.criteria import FAIL, NOT_RUN, PASS, SKIP, Criteria, fmt_value, worst

ELSEWHERE = "elsewhere"


@dataclass
class Row:
    id: str
    description: str
    threshold: str
    measured: str
    verdict: str  # pass | fail | skip | not run | elsewhere
    note: str = ""
    count: int = 0

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def summarize(criteria: Criteria, session: str, target_kind: str, results: list) -> list[Row]:
    """One row per criterion of the profile: this session's first, then the others.

    A criterion of this session that nobody measured is `not run` (or `skip` when it does not
    apply to the target), never `pass`. Criteria of other sessions say which session measures them.
    """
    by_id: dict[str, list] = {}
    for r in results:
        by_id.setdefault(r.id, []).append(r)
    mine, others = [], []
    for c in criteria.items.values():
        rs = by_id.get(c.id, [])
        measured = [r for r in rs if r.verdict in (PASS, FAIL)]
        skipped = [r for r in rs if r.verdict == SKIP]
        if measured:
            verdict = FAIL if any(r.verdict == FAIL for r in measured) else PASS
            value = worst(c, [r.measured for r in measured])
            failing = [r for r in measured if r.verdict == FAIL]
            note = (failing or measured)[-1].detail
            if len(measured) > 1:
                note = f"worst of {len(measured)}" + (f"; {note}" if note else "")
            row = Row(c.id, c.description, c.threshold_text, fmt_value(value, c.unit), verdict, note, len(measured))
        elif skipped:
            row = Row(c.id, c.description, c.threshold_text, "—", SKIP, skipped[-1].reason)
        elif session in c.sessions and target_kind and not c.applies_to(target_kind):
            row = Row(c.id, c.description, c.threshold_text, "—", SKIP, f"does not apply to the {target_kind} target")
        elif session in c.sessions:
            row = Row(
                c.id,
                c.description,
                c.threshold_text,
                "—",
                NOT_RUN,
                "not measured: its test was deselected, skipped or errored before measuring",
            )
        else:
            where = ", ".join(f"nox -s {s}" for s in c.sessions)
            row = Row(c.id, c.description, c.threshold_text, "—", ELSEWHERE, f"measured by {where}")
        (mine if session in c.sessions or measured or skipped else others).append(row)
    return mine + others


def verdict_counts(rows: list[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return counts


def build(
    *,
    session: str,
    criteria: Criteria,
    target: dict,
    results: list,
    attachments: list,
    timings: dict,
    tests: dict,
    exit_status: int,
    started_at: float,
    finished_at: float,
    notes: list[str] | None = None,
    sections: list[dict] | None = None,
) -> dict[str, Any]:
    rows = summarize(criteria, session, target.get("kind", ""), results)
    counts = verdict_counts(rows)
    return {
        "session": session,
        "profile": criteria.profile,
        "profile_description": criteria.description,
        "params": criteria.params,
        "target": target,
        "started_at": started_at,
        "finished_at": finished_at,
        "wall_s": round(finished_at - started_at, 2),
        "timings": timings,
        "tests": tests,
        "exit_status": exit_status,
        "passed": counts.get(FAIL, 0) == 0 and exit_status == 0,
        "counts": counts,
        "rows": [r.to_dict() for r in rows],
        "results": [r.to_dict() for r in results],
        "attachments": attachments,
        "notes": notes or [],
        "sections": sections or [],
    }


_ICON = {PASS: "PASS", FAIL: "FAIL", SKIP: "skip", NOT_RUN: "not run", ELSEWHERE: "—"}


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict, report_dir: Path | None = None) -> str:
    t = report["target"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# Gate report: {report['session']} — {verdict}",
        "",
        f"- profile: `{report['profile']}` ({report.get('profile_description', '')})",
        f"- target: `{t.get('kind', '?')}`"
        + (f" at {t['base_url']}" if t.get("base_url") else "")
        + (f", image `{t['image']}`" if t.get("image") else ""),
        f"- wall time: {report['wall_s']} s; " + ", ".join(f"{k} {v} s" for k, v in report["timings"].items()),
        "- tests: " + ", ".join(f"{v} {k}" for k, v in report["tests"].items() if v),
        f"- exit status: {report['exit_status']}",
    ]
    for n in report.get("notes", []):
        lines.append(f"- note: {n}")
    rows = [r for r in report["rows"] if r["verdict"] != ELSEWHERE]
    others = [r for r in report["rows"] if r["verdict"] == ELSEWHERE]
    lines += ["", "## Criteria", "", "| criterion | threshold | measured | verdict | note |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| `{r['id']}` {_md_escape(r['description'])} | {_md_escape(r['threshold'])} | "
            f"{_md_escape(r['measured'])} | **{_ICON[r['verdict']]}** | {_md_escape(r['note'])} |"
        )
    if others:
        lines += [
            "",
            "## Criteria of other sessions (not measured here)",
            "",
            "| criterion | threshold | measured by |",
            "|---|---|---|",
        ]
        for r in others:
            lines.append(
                f"| `{r['id']}` {_md_escape(r['description'])} | {_md_escape(r['threshold'])} | "
                f"{_md_escape(r['note'].removeprefix('measured by '))} |"
            )
    for sec in report.get("sections", []):
        lines += ["", f"## {sec['title']}", "", sec["markdown"].rstrip("\n")]
    if report["attachments"]:
        lines += ["", "## Attachments", ""]
        for a in report["attachments"]:
            path = a["path"]
            if report_dir is not None:
                try:
                    path = os.path.relpath(path, report_dir)
                except ValueError:
                    pass
            lines.append(f"- [{a['title']}]({path})")
    return "\n".join(lines) + "\n"


def render_terminal(report: dict, width: int = 120) -> str:
    rows = [r for r in report["rows"] if r["verdict"] != ELSEWHERE]
    others = [r for r in report["rows"] if r["verdict"] == ELSEWHERE]
    w_id = max([len(r["id"]) for r in rows] + [9])
    w_th = max([len(r["threshold"]) for r in rows] + [9])
    w_me = min(max([len(r["measured"]) for r in rows] + [8]), 28)
    head = f"{'criterion':<{w_id}}  {'threshold':<{w_th}}  {'measured':<{w_me}}  {'verdict':<7}  note"
    out = [head, "-" * min(width, len(head) + 40)]
    for r in rows:
        measured = r["measured"] if len(r["measured"]) <= w_me else r["measured"][: w_me - 1] + "…"
        line = f"{r['id']:<{w_id}}  {r['threshold']:<{w_th}}  {measured:<{w_me}}  {_ICON[r['verdict']]:<7}  {r['note']}"
        out.append(line if len(line) <= width else line[: width - 1] + "…")
    if others:
        sessions = sorted({s for r in others for s in r["note"].removeprefix("measured by ").split(", ")})
        out.append(f"({len(others)} criteria of other sessions listed in report.md: {', '.join(sessions)})")
    return "\n".join(out)


def write(report: dict, report_dir: Path) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    js = report_dir / "report.json"
    md = report_dir / "report.md"
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md.write_text(render_markdown(report, report_dir))
    return js, md
