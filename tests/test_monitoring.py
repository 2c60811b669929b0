"""monitoring/: the alert rules, their promtool unit tests and the scrape config (Debian's
`prometheus` package provides promtool; .ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from validation import criteria as criteria_mod
from validation import prometheus
from validation.gate import CriterionFailed
from validation.stubs import StubApp
from validation.testing import expect_failure, make_gate

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
UNIT_SCALE = {"%": 0.01, "GB": 1e9, "s": 1.0}  # criteria.toml units -> the metrics' units
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")


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
    mirrored = [r for r in prometheus.rules() if "criterion" in r.get("labels", {})]
    assert len(mirrored) >= 3
    for rule in mirrored:
        c = crit[rule["labels"]["criterion"]]
        number = float(re.findall(r">\s*([0-9.e+]+)\s*$", rule["expr"].strip())[-1])
        assert number == pytest.approx(float(c.threshold) * UNIT_SCALE[c.unit]), rule["alert"]


def test_every_alert_has_a_severity_a_summary_and_a_runbook_entry():
    runbook = (MONITORING.parent / "DEPLOYMENT.md").read_text()
    for rule in prometheus.rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert f"`{rule['alert']}`" in runbook, f"{rule['alert']} has no entry in DEPLOYMENT.md's runbook"


def test_the_rules_only_use_series_the_app_exports(tmp_path):
    from prometheus_client import REGISTRY

    from app import metrics

    metrics.watch_volume(tmp_path)
    exported = {family.name for family in REGISTRY.collect()} | {"up"}
    base = {re.sub(r"_(bucket|total|count|sum)$", "", name) for name in prometheus.series_used()}
    assert len(base) >= 6 and base <= exported, sorted(base - exported)


needs_prometheus = pytest.mark.skipif(prometheus.binary() is None, reason="prometheus not installed (apt-get install prometheus)")


@needs_prometheus
def test_a_real_prometheus_sees_every_series_of_a_healthy_app_and_the_alert_check_fails_when_nothing_goes_down(tmp_path):
    gate = make_gate("plan")
    with StubApp() as stub, prometheus.PrometheusServer(stub.base_url, tmp_path) as prom:
        # the "freeze" does nothing: CaiDemoDown cannot fire, so the check must fail
        expect_failure(prometheus.check, gate, prom, lambda: None, lambda: None, timeout=4,
                       criterion="monitoring.alert_fired", measured="no")
    verdicts = {r.id: r.verdict for r in gate.recorder.results}
    assert verdicts["monitoring.series_missing"] == "pass", gate.recorder.results


@needs_prometheus
def test_the_series_check_fails_when_the_app_exports_no_prometheus_text(tmp_path):
    gate = make_gate("plan")
    with StubApp(faults={"bad_metrics"}) as stub, prometheus.PrometheusServer(stub.base_url, tmp_path) as prom:
        with pytest.raises(CriterionFailed) as info:
            prometheus.check(gate, prom, lambda: None, lambda: None, timeout=4, scrape_timeout=8)
    assert "[monitoring.series_missing] FAILED" in str(info.value), info.value
