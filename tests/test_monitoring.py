"""monitoring/: the alert rules, their promtool unit tests and the scrape config (Debian's
`prometheus` package provides promtool; .ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from validation import criteria as criteria_mod

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
UNIT_SCALE = {"%": 0.01, "GB": 1e9, "s": 1.0}  # criteria.toml units -> the metrics' units
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")


def _rules() -> list[dict]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
@pytest.mark.parametrize("args", [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"),
                                  ("test", "rules", "alerts.test.yml")])
def test_promtool_accepts_the_config_and_the_rules_pass_their_unit_tests(args):
    done = _promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_rule_tests_fail_when_a_threshold_moves(tmp_path):
    """The unit tests pin the thresholds: the memory alert at 9 GB no longer fires on 8 GB."""
    text = (MONITORING / "alerts.yml").read_text()
    assert "process_resident_memory_bytes{job=\"cai-demo\"} > 7e9" in text
    (tmp_path / "alerts.yml").write_text(text.replace("> 7e9", "> 9e9"))
    shutil.copy(MONITORING / "alerts.test.yml", tmp_path)
    done = _promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert done.returncode != 0 and "CaiDemoMemoryHigh" in done.stdout + done.stderr


def test_every_alert_that_mirrors_a_criterion_uses_the_plans_threshold():
    crit = criteria_mod.load("plan")
    mirrored = [r for r in _rules() if "criterion" in r.get("labels", {})]
    assert len(mirrored) >= 3
    for rule in mirrored:
        c = crit[rule["labels"]["criterion"]]
        number = float(re.findall(r">\s*([0-9.e+]+)\s*$", rule["expr"].strip())[-1])
        assert number == pytest.approx(float(c.threshold) * UNIT_SCALE[c.unit]), rule["alert"]


def test_every_alert_has_a_severity_a_summary_and_a_runbook_entry():
    runbook = (MONITORING.parent / "DEPLOYMENT.md").read_text()
    for rule in _rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert f"`{rule['alert']}`" in runbook, f"{rule['alert']} has no entry in DEPLOYMENT.md's runbook"


def test_the_rules_only_use_series_the_app_exports(tmp_path):
    from prometheus_client import REGISTRY

    from app import metrics

    metrics.watch_volume(tmp_path)
    exported = {family.name for family in REGISTRY.collect()} | {"up"}
    used = set()
    for rule in _rules():
        used |= set(re.findall(r"\b((?:cai|process)_[a-z_]+|up)\b(?=\s*[{\[)]|\s*[=<>]|\s*$)", rule["expr"]))
    base = {re.sub(r"_(bucket|total|count|sum)$", "", name) for name in used}
    assert base and base <= exported, sorted(base - exported)
