"""monitoring/: the alert rules, their promtool unit tests and the scrape config (Debian's
`prometheus` package provides promtool; .ci/run installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from validation import criteria as criteria_mod
from validation import prometheus
from validation.gate import CriterionFailed
from validation.testing import expect_failure, make_gate
from validation.testing.stub_app import StubApp

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


def _threshold(rule: dict) -> float:
    """N of a rule whose expression ends in `> N`."""
    return float(re.findall(r">\s*([0-9.e+]+)\s*$", rule["expr"].strip())[-1])


def test_every_alert_that_mirrors_a_criterion_uses_the_plans_threshold():
    crit = criteria_mod.load("plan")
    mirrored = [r for r in prometheus.rules() if "criterion" in r.get("labels", {})]
    assert len(mirrored) >= 3
    for rule in mirrored:
        c = crit[rule["labels"]["criterion"]]
        assert _threshold(rule) == pytest.approx(float(c.threshold) * UNIT_SCALE[c.unit]), rule["alert"]


def test_every_alert_has_a_severity_a_summary_and_a_runbook_entry():
    runbook = (MONITORING.parent / "DEPLOYMENT.md").read_text()
    for rule in prometheus.rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert f"`{rule['alert']}`" in runbook, f"{rule['alert']} has no entry in DEPLOYMENT.md's runbook"


def _exported(tmp_path: Path) -> set[str]:
    """The metric families the app's /metrics carries (prometheus-client's names: no _total), and `up`."""
    from prometheus_client import REGISTRY

    from app import metrics

    metrics.watch_volume(tmp_path)
    return {family.name for family in REGISTRY.collect()} | {"up"}


def _base(name: str) -> str:
    return re.sub(r"_(bucket|total|count|sum)$", "", name)


def test_the_rules_only_use_series_the_app_exports(tmp_path):
    exported = _exported(tmp_path)
    base = {_base(name) for name in prometheus.series_used()}
    assert len(base) >= 6 and base <= exported, sorted(base - exported)


# ---------------------------------------------------------------------------------------------
# The Grafana dashboard (monitoring/grafana-dashboard.json)

DS_UID = "${DS_PROMETHEUS}"
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")  # a metric name right before its label matchers


def _unknown_series(exprs: dict[str, str], exported: set[str]) -> dict[str, list[str]]:
    """{query: metric names it reads that the app does not export (or [] when it reads none at all)}."""
    bad = {}
    for where, expr in exprs.items():
        names = set(prometheus.series_in([expr])) | set(SELECTOR.findall(re.sub(r'"[^"]*"', '""', expr)))
        unknown = sorted(n for n in names if _base(n) not in exported)
        if unknown or not names:
            bad[where] = unknown or ["(reads no metric)"]
    return bad


def test_the_dashboard_is_an_importable_grafana_dashboard():
    dash = prometheus.dashboard()
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"] and dash["__inputs"][0]["pluginId"] == "prometheus"
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"job", "instance"} <= set(variables) and variables["job"]["current"]["value"] == "cai-demo"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10, ids
    for panel in dash["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_UID}, panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"]["uid"] == DS_UID and t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_the_dashboard_only_reads_series_the_app_exports_and_shows_the_plans_ones(tmp_path):
    exported = _exported(tmp_path)
    exprs = prometheus.dashboard_exprs()
    assert _unknown_series(exprs, exported) == {}
    shown = {_base(n) for n in prometheus.series_in(list(exprs.values()))}
    wanted = {"up", "cai_http_requests", "cai_http_request_duration_seconds", "process_resident_memory_bytes",
              "process_cpu_seconds", "cai_checkpoint_volume_bytes", "cai_training_runs", "cai_model_loaded"}
    assert wanted <= shown, sorted(wanted - shown)
    assert {_base(n) for n in prometheus.series_used()} <= shown, "every series an alert reads has a panel"


def test_a_dashboard_query_on_a_metric_the_app_does_not_export_is_caught(tmp_path):
    exported = _exported(tmp_path)
    exprs = prometheus.dashboard_exprs()
    where = next(iter(exprs))
    broken = {**exprs, where: 'rate(cai_http_requests_totl{job="$job"}[5m])', "other / A": 'node_load1{job="$job"}'}
    assert _unknown_series(broken, exported) == {where: ["cai_http_requests_totl"], "other / A": ["node_load1"]}


def test_the_dashboard_thresholds_are_the_plans(tmp_path):
    """The red line on a panel that mirrors an alert is the alert's (so the plan's) threshold."""
    crit = criteria_mod.load("plan")
    panels = {p["title"]: p for p in prometheus.dashboard()["panels"]}
    mirrored = {"5xx ratio": "perf.error_rate", "Generation latency (POST /api/generate)": "perf.response_p95",
                "Memory (RSS)": "perf.memory_peak", "CPU (share of its cores)": "perf.cpu"}
    for title, cid in mirrored.items():
        steps = panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        c = crit[cid]
        assert steps[-1]["value"] == pytest.approx(float(c.threshold) * UNIT_SCALE[c.unit]), title


def test_the_queue_panel_draws_the_queue_alerts_threshold():
    rule = next(r for r in prometheus.rules() if r["alert"] == "CaiDemoQueueDeep")
    panel = next(p for p in prometheus.dashboard()["panels"] if p["title"] == "Generation queue depth")
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == _threshold(rule)


def _promtool_check_queries(exprs: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Every query as a recording rule in a temporary rule file: `promtool check rules` parses each."""
    import yaml

    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs.values())]
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return _promtool("check", "rules", "dashboard-rules.yml", cwd=tmp_path)


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    exprs = prometheus.dashboard_exprs(plain=True)
    assert not [e for e in exprs.values() if "$" in e], "a Grafana variable is not replaced (GRAFANA_VARS)"
    done = _promtool_check_queries(exprs, tmp_path)
    assert done.returncode == 0 and f"{len(exprs)} rules found" in done.stdout, done.stdout + done.stderr
    broken = {**exprs, "broken / A": "sum(rate(cai_http_requests_total[5m])"}
    done = _promtool_check_queries(broken, tmp_path)
    assert done.returncode != 0, "promtool must reject an unbalanced query"


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


def test_cpu_cores_are_capped_by_the_cgroup_quota(tmp_path):
    from app import metrics

    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("50000 100000\n")  # half a core
    assert metrics.cpu_cores(quota) == 0.5
    quota.write_text("max 100000\n")
    assert metrics.cpu_cores(quota) == affinity
    assert metrics.cpu_cores(tmp_path / "absent") == affinity
