"""The demo's walkthrough: the journey's steps as a page a person can open (nox -s demo).

reports/demo/walkthrough.html (screenshots inline, the video on top) and walkthrough.md.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

INTRO = (
    "What the browser gate checks, as a person would do it: open the app, load the default model, "
    "evaluate a harmful and a harmless text, train with the profile's preset, compare base and trained "
    "generations, and run the impact analysis with its downloads."
)


def _rel(path: Path | None, base: Path) -> str:
    return os.path.relpath(path, base) if path else ""


def write(
    report_dir: Path,
    steps: list,
    *,
    video: Path | None = None,
    browser_start: float | None = None,
    journey_s: float | None = None,
    target: dict | None = None,
) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    target = target or {}
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    where = f"{target.get('kind', '?')} target" + (f" at {target['base_url']}" if target.get("base_url") else "")
    totals = []
    if browser_start is not None:
        totals.append(f"browser start {browser_start:.1f} s")
    if journey_s is not None:
        totals.append(f"journey {journey_s:.1f} s")
    md = [f"# Walkthrough: the browser journey ({when})", "", INTRO, "", f"- {where}"]
    if totals:
        md.append("- " + ", ".join(totals))
    if video:
        md.append(f"- video: [{video.name}]({_rel(video, report_dir)})")
    md.append("")
    body = [
        f"<h1>Walkthrough: the browser journey</h1><p>{html.escape(INTRO)}</p>",
        f"<p>{html.escape(where)} · {html.escape(when)}" + (f" · {html.escape(', '.join(totals))}" if totals else "") + "</p>",
    ]
    if video:
        body.append(f"<video src='{html.escape(_rel(video, report_dir))}' controls width='960'></video>")
    if not steps:
        md.append("No step ran (see report.md).")
        body.append("<p>No step ran (see report.md).</p>")
    for i, s in enumerate(steps, 1):
        secs = f"{s.seconds:.2f} s" if s.seconds is not None else "—"
        verdict = "ok" if s.ok else "FAILED"
        if s.ok and s.within is not None:
            verdict = f"{'within' if s.within else 'OVER'} `{s.criterion}` {s.threshold}"
        md += [f"## {i}. {s.title} — {secs} ({verdict})", ""]
        md += [f"- {n}" for n in s.notes]
        if s.screenshot:
            md += ["", f"![{s.title}]({_rel(s.screenshot, report_dir)})"]
        md.append("")
        shot = _rel(s.screenshot, report_dir)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in s.notes)
        img = (
            (f"<a href='{html.escape(shot)}'><img src='{html.escape(shot)}' width='960' alt='{html.escape(s.title)}'></a>")
            if s.screenshot
            else ""
        )
        plain = html.escape(verdict.replace("`", ""))
        body.append(f"<h2>{i}. {html.escape(s.title)} <small>{secs} · {plain}</small></h2><ul>{notes}</ul>{img}")
    md_path = report_dir / "walkthrough.md"
    html_path = report_dir / "walkthrough.html"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path.write_text(
        "<!doctype html><meta charset='utf-8'><title>Walkthrough: the browser journey</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}img{border:1px solid #ccc}</style>" + "\n".join(body),
        encoding="utf-8",
    )
    return [md_path, html_path]
