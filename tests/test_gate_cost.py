"""The monthly cost check (cost.monthly, validation/cost): its arithmetic against the price table, the repo's
fly.toml inside the budget at the profile's duty cycle, an always-on 16 GB machine failing it, configs that
cannot be read naming file and field, the duty cycle from a watch report, and the session end to end. ~8 s."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from validation import criteria as criteria_mod
from validation.cost import duty, platforms, pricing
from validation.cost.check import monthly_cost
from validation.testing import expect_failure, make_gate
from validation.watch import writeup
from validation.watch.probes import PROBES, Probe

ROOT = Path(__file__).resolve().parents[1]
FLY_TOML = (ROOT / "fly.toml").read_text()
PRICES = pricing.load_prices()
PLAN = criteria_mod.load("plan")


def plan_assumptions(hours: float | None = None) -> pricing.Assumptions:
    d = duty.assumed(PLAN.param("cost_duty_hours") if hours is None else hours, "plan")
    return pricing.Assumptions(d, PLAN["image.size"].threshold, "image.size bound", PLAN.param("cost_railway_usage"))


def edited(tmp_path: Path, text: str, name: str, **settings: str) -> Path:
    """`text` with each `key = value` line of `settings` replaced (the key must be there)."""
    for key, value in settings.items():
        text, n = re.subn(rf"^(\s*){key} = .*$", rf"\g<1>{key} = {value}", text, flags=re.M)
        assert n == 1, key
    path = tmp_path / name
    path.write_text(text)
    return path


def always_on_16gb(tmp_path: Path) -> Path:
    # 16 GB needs 8 shared vCPUs on Fly (2 GB per shared vCPU at most)
    return edited(tmp_path, FLY_TOML, "fly.toml", auto_stop_machines='"off"', min_machines_running="1",
                  cpus="8", memory='"16gb"')


def check(path: Path, hours: float | None = None, name: str = "fly.toml"):
    """The check as the session runs it: (its gate, the estimate); raises CriterionFailed over budget."""
    gate = make_gate("plan")
    return gate, monthly_cost(gate, path, name, PRICES, plan_assumptions(hours))


def price(path: Path, hours: float | None = None) -> pricing.Estimate:
    return pricing.estimate(platforms.read(path), PRICES, plan_assumptions(hours))


# --- the arithmetic -------------------------------------------------------------------------------


def test_todays_fly_toml_at_the_default_duty_is_within_budget_and_adds_up():
    gate, est = check(ROOT / "fly.toml")
    fly = PRICES.table("fly")
    hours = PLAN.param("cost_duty_hours")
    machine_h = (4 * fly["cpu_second"]["shared"] + (8 - 4 * 0.25) * fly["memory_gb_second"]) * 3600
    rootfs = PLAN["image.size"].threshold * fly["stopped_rootfs_gb_month"] * (730 - hours) / 730
    assert est.hours == hours
    assert est.total == pytest.approx(machine_h * hours + rootfs + 10 * fly["volume_gb_month"])
    assert [(r.id, r.verdict) for r in gate.recorder.results] == [("cost.monthly", "pass")]
    (section,) = gate.recorder.sections
    assert section["title"] == "Monthly cost: fly.toml"
    assert f"| machine an hour | CPU + memory | ${machine_h:.4f}/h |" in section["markdown"]
    assert [ln.item for ln in est.lines] == ["CPU", "memory", "machine an hour", "hours", "machine",
                                             "root file system while stopped", "volume"]


def test_an_always_on_16gb_fly_machine_fails_the_budget(tmp_path):
    e = expect_failure(check, always_on_16gb(tmp_path), criterion="cost.monthly")
    assert "730 h a month" in str(e) and "threshold < 30 USD" in str(e)


def test_todays_fly_machine_always_on_fails_the_budget_too(tmp_path):
    path = edited(tmp_path, FLY_TOML, "fly.toml", min_machines_running="1")
    e = expect_failure(check, path, criterion="cost.monthly")
    assert "fly.toml, 730 h a month" in str(e)


def test_a_machine_used_all_month_costs_what_an_always_on_one_does(tmp_path):
    always = price(edited(tmp_path, FLY_TOML, "fly.toml", auto_stop_machines='"off"'), 0).total
    assert price(ROOT / "fly.toml", duty.HOURS_PER_MONTH).total == pytest.approx(always)
    assert price(ROOT / "fly.toml", 10).total < price(ROOT / "fly.toml", 100).total < 30 < always


def test_cloud_run_instance_based_pays_past_the_free_tier_request_based_at_its_own_rates(tmp_path):
    cloud = PRICES.table("cloud_run")
    est = price(ROOT / "cloudrun.yaml", hours=100)
    run = platforms.read(ROOT / "cloudrun.yaml")
    cpu_s, gib_s = run.cpus * 360000, run.memory_gib * 360000  # 100 h
    ib = cloud["instance_based"]
    expected = ((cpu_s - ib["free_vcpu_seconds"]) * ib["vcpu_second"]
                + (gib_s - ib["free_gib_seconds"]) * ib["memory_gib_second"])
    assert est.total == pytest.approx(expected) and "instance-based" in est.summary
    text = (ROOT / "cloudrun.yaml").read_text().replace('cpu-throttling: "false"', 'cpu-throttling: "true"')
    (tmp_path / "throttled.yaml").write_text(text)
    throttled = price(tmp_path / "throttled.yaml", hours=100)
    rb = cloud["request_based"]
    assert throttled.total == pytest.approx((cpu_s - rb["free_vcpu_seconds"]) * rb["vcpu_second"]
                                            + (gib_s - rb["free_gib_seconds"]) * rb["memory_gib_second"])
    (tmp_path / "warm.yaml").write_text(text.replace('minScale: "0"', 'minScale: "1"'))
    assert platforms.read(tmp_path / "warm.yaml").always_on == 1
    expect_failure(check, tmp_path / "warm.yaml", name="warm.yaml", criterion="cost.monthly")


def test_railway_bills_the_assumed_use_always_on_unless_it_sleeps(tmp_path):
    rw = PRICES.table("railway")
    use = PLAN.param("cost_railway_usage")
    est = price(ROOT / "railway.toml")
    hourly = (use["vcpu"] * rw["vcpu_minute"] + use["memory_gb"] * rw["memory_gb_minute"]) * 60
    usage = hourly * 730 + use["volume_gb"] * rw["volume_gb_month"]
    assert est.hours == 730 and est.total == pytest.approx(rw["subscription_month"] + max(0, usage - rw["included_usage_month"]))
    sleepy = tmp_path / "railway.toml"
    sleepy.write_text((ROOT / "railway.toml").read_text().replace("numReplicas = 1", "numReplicas = 1\nsleepApplication = true"))
    assert price(sleepy).hours == PLAN.param("cost_duty_hours")


def test_sizes_are_read_in_each_platforms_units():
    assert platforms.fly_gb("8gb", "m") == 8 and platforms.fly_gb("512MB", "m") == 0.5 and platforms.fly_gb(1024, "m") == 1
    assert platforms.fly_gb(10, "initial_size", bare="gb") == 10
    assert platforms.k8s_gib("8Gi", "m") == 8 and platforms.k8s_gib("8G", "m") == pytest.approx(7.45, abs=0.01)
    assert platforms.docker_gib("8g", "m") == 8 and platforms.k8s_cpus("500m", "c") == 0.5


# --- configs that cannot be priced: the file and the field are named ------------------------------------


@pytest.mark.parametrize("name, settings, says", [
    ("fly.toml", {"memory": '"8 parsecs"'}, "fly.toml: [[vm]] memory = '8 parsecs' is not a size"),
    ("fly.toml", {"memory": '"16gb"'}, "fly.toml: [[vm]] memory 16 GB: 4 shared vCPUs take 1 to 8 GB"),
    ("fly.toml", {"cpu_kind": '"quantum"'}, "fly.toml: [[vm]] cpu_kind = 'quantum'"),
    ("fly.toml", {"auto_stop_machines": '"sometimes"'}, "fly.toml: auto_stop_machines = 'sometimes'"),
    ("fly.toml", {"initial_size": '"lots"'}, "fly.toml: [mounts] initial_size = 'lots' is not a size"),
    ("railway.toml", {"numReplicas": '"two"'}, "railway.toml: [deploy] numReplicas = 'two'"),
    ("cloudrun.yaml", {"memory": "lots"}, "resources.limits.memory = 'lots' is not a size"),
])
def test_a_malformed_config_fails_naming_the_file_and_the_field(tmp_path, name, settings, says):
    text = (ROOT / name).read_text()
    if name.endswith(".yaml"):  # YAML uses `key: value`
        for key, value in settings.items():
            text = re.sub(rf"^(\s*){key}: .*$", rf"\g<1>{key}: {value}", text, count=1, flags=re.M)
        path = tmp_path / name
        path.write_text(text)
    else:
        path = edited(tmp_path, text, name, **settings)
    e = expect_failure(check, path, name=name, criterion="cost.monthly")
    assert says in str(e), str(e)


def test_what_is_not_a_platform_config_is_named(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    (tmp_path / "other.toml").write_text("[tool]\nx = 1\n")
    (tmp_path / "bad.toml").write_text("app = \n")
    (tmp_path / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\n")
    for file, says in [("x.json", "not a .toml"), ("other.toml", "neither a fly.toml"), ("bad.toml", "not valid TOML"),
                       ("pod.yaml", "not a Cloud Run service")]:
        with pytest.raises(platforms.ConfigError, match=re.escape(says)):
            platforms.read(tmp_path / file)


# --- the price table ----------------------------------------------------------------------------------


def test_every_price_table_has_its_source_and_read_date_and_warns_after_180_days():
    for platform, t in PRICES.tables.items():
        assert t["source"].startswith("https://") and isinstance(t["read"], dt.date), platform
    oldest, newest = min(t["read"] for t in PRICES.tables.values()), max(t["read"] for t in PRICES.tables.values())
    assert PRICES.stale(oldest + dt.timedelta(days=pricing.MAX_AGE_DAYS)) == []
    late = PRICES.stale(newest + dt.timedelta(days=pricing.MAX_AGE_DAYS + 1))
    assert len(late) == len(PRICES.tables) and "days ago (> 180)" in late[0] and "https://" in late[0]


def test_a_malformed_price_table_names_the_table_and_the_field(tmp_path):
    (tmp_path / "p.toml").write_text('[fly]\nsource = "https://x"\n')
    with pytest.raises(pricing.PricesError, match=r"\[fly\] needs source .* and read"):
        pricing.load_prices(tmp_path / "p.toml")
    (tmp_path / "p.toml").write_text('[fly]\nsource = "https://x"\nread = 2026-01-01\ncpu_second = { shared = "cheap" }\n')
    with pytest.raises(pricing.PricesError, match=r"\[fly\] cpu_second.shared = 'cheap' is not a price"):
        pricing.load_prices(tmp_path / "p.toml").num("fly", "cpu_second.shared")


# --- the duty cycle -----------------------------------------------------------------------------------


def watch_report(tmp_path: Path, pattern: str) -> Path:
    """A watch session's report.json whose rounds are `pattern` ('.' up, 'x' down), 10 s apart."""
    probes = [Probe(k, which, 1000.0 + 10 * k, 10.0 * k, None if c == "x" else 200, 0.01, c == ".",
                    "ConnectError" if c == "x" else "") for k, c in enumerate(pattern) for which in PROBES]
    s = writeup.summary(probes, interval=10, duration=10 * len(pattern), base_url="https://cai-demo.fly.dev")
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"target": {"kind": "url"}, "sections": [{"title": writeup.SECTION_TITLE, "data": s}]}))
    return path


def test_duty_from_a_watch_is_its_up_share_of_the_month(tmp_path):
    d = duty.from_watch(watch_report(tmp_path, "...x"))
    assert d.hours == 0.75 * duty.HOURS_PER_MONTH and "up 75 % of its rounds" in d.why and "fly.dev" in d.why
    assert duty.from_watch(watch_report(tmp_path, "....")).hours == duty.HOURS_PER_MONTH


def test_duty_from_something_else_or_a_bad_assumption_is_an_error(tmp_path):
    (tmp_path / "smoke.json").write_text(json.dumps({"sections": []}))
    with pytest.raises(platforms.ConfigError, match="no 'Uptime watch' section"):
        duty.from_watch(tmp_path / "smoke.json")
    with pytest.raises(platforms.ConfigError, match="not a readable report.json"):
        duty.from_watch(tmp_path / "missing.json")
    with pytest.raises(platforms.ConfigError, match="cost_duty_hours = 800"):
        duty.assumed(800, "plan")


# --- the session end to end ----------------------------------------------------------------------------


def test_the_cost_session_reports_the_arithmetic_fails_the_16gb_machine_and_ignores_target_options(tmp_path):
    stale = tmp_path / "prices.toml"
    stale.write_text(re.sub(r"^read = .*$", "read = 2020-01-01", pricing.PRICES_FILE.read_text(), flags=re.M))
    report_dir = tmp_path / "report"
    cmd = [sys.executable, "-m", "pytest", "validation/cost", "--platform-config", str(ROOT / "fly.toml"),
           "--platform-config", str(always_on_16gb(tmp_path)), "--price-table", str(stale), "--report-dir", str(report_dir),
           "--target", "container", "--profile", "ci", "-p", "no:cacheprovider", "-p", "no:playwright", "-p", "no:locust"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "GATE_SESSION": "cost"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    report = json.loads((report_dir / "report.json").read_text())
    assert report["target"] == {"kind": "none"}, "nothing is started"
    (row,) = [r for r in report["rows"] if r["id"] == "cost.monthly"]
    assert row["verdict"] == "fail" and row["note"].startswith("worst of 2")
    verdicts = sorted(r["verdict"] for r in report["results"])
    assert verdicts == ["fail", "pass"]
    md = (report_dir / "report.md").read_text()
    assert md.count("## Monthly cost: ") == 2 and "| **total a month** |" in md and "16 GB" in md
    assert "StalePrices" in out and "days ago (> 180)" in md
    assert "[gate]   machine an hour: CPU + memory = $0.0706/h" in out


def test_a_fly_size_preset_gives_its_cpus_and_the_memory_they_include(tmp_path):
    path = tmp_path / "fly.toml"
    path.write_text('app = "x"\n[[vm]]\n  size = "performance-2x"\n')
    est = price(path, 10)
    assert "performance-2x, 4 GB" in est.summary and est.hours == duty.HOURS_PER_MONTH, "no http_service: never stops"
