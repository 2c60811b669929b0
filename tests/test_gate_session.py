"""The gate end to end on the url target: `pytest validation/smoke --base-url <stub>` in a subprocess.
A healthy stub passes (exit 0) with the image checks skipped *with their reason*; a broken one
exits non-zero, its report naming the failed criterion. ~4 s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from validation.testing.stub_app import StubApp
from validation.testing.stub_effects import EffectStub

ROOT = Path(__file__).resolve().parents[1]


def run_smoke(base_url: str, report_dir: Path, *extra: str) -> tuple[int, str, dict]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "validation/smoke",
        "--base-url",
        base_url,
        "--report-dir",
        str(report_dir),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:playwright",
        "-p",
        "no:locust",
        "-k",
        "not gradio_api and not ui_controls and not ui_impact",  # the stub serves no Gradio
        *extra,
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "GATE_SESSION": "smoke"},
    )
    report = json.loads((report_dir / "report.json").read_text())
    return proc.returncode, proc.stdout + proc.stderr, report


def test_healthy_stub_passes_on_the_url_target_with_image_checks_skipped(tmp_path):
    with EffectStub() as stub:
        code, out, report = run_smoke(stub.base_url, tmp_path)
    assert code == 0, out
    rows = {r["id"]: r for r in report["rows"]}
    assert report["target"]["kind"] == "url" and report["passed"]
    for cid in ("image.size", "image.user", "image.compilers", "startup.health_time", "container.log_errors"):
        assert rows[cid]["verdict"] == "skip" and rows[cid]["note"], cid
    assert rows["health.status"]["verdict"] == "pass" and rows["train.state"]["measured"] == "succeeded"
    assert rows["perf.response_p95"]["verdict"] == "elsewhere"
    md = (tmp_path / "report.md").read_text()
    assert "| `image.size`" in md and "does not apply to the url target" in md
    assert (tmp_path / "junit.xml").exists()
    assert "TARGET: URL" in out and "criterion" in out  # the banner and the table are printed


def test_broken_stub_fails_the_session_naming_the_criterion(tmp_path):
    with StubApp({"health_500", "eval_no_flag"}) as stub:
        code, out, report = run_smoke(stub.base_url, tmp_path, "-k", "health or evaluate")
    assert code == 1, out
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["health.status"]["verdict"] == "fail" and rows["health.status"]["measured"] == "500"
    assert rows["evaluate.harmful_flagged"]["verdict"] == "fail"
    assert not report["passed"]
    assert "[health.status] FAILED" in out and "measured 500" in out


def test_a_url_that_does_not_answer_fails_clearly(tmp_path):
    stub = StubApp().start()
    url = stub.base_url
    stub.stop()
    code, out, report = run_smoke(url, tmp_path, "--health-timeout", "1", "-k", "health")
    assert code == 1, out
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["health.status"]["verdict"] == "fail" and "does not answer" in rows["health.status"]["note"]
    assert "url target failed to start" in out
