"""A real Prometheus (Debian's `prometheus` binary) scraping the app under test with the repo's alert
rules (monitoring/alerts.yml): do the series the rules need exist, and does a fault fire its alert?

    with PrometheusServer(app.base_url, workdir, auth=...) as prom:
        prom.wait_scraped()
        prom.missing_series()             # names the rules use that the app does not export
        prom.wait_alert("CaiDemoDown")    # seconds until it fires (None: it did not)

The rules run as written except that each `for:` is cut to 0 s and everything is scraped and
evaluated every second, so a fault shows within seconds; their thresholds are unit-tested with
promtool (tests/test_monitoring.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import yaml

from validation.targets import TargetError, free_port, wait_http

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
SERIES = re.compile(r"\b((?:cai|process)_[a-z_]+|up)\b(?=\s*[{\[)]|\s*[=<>]|\s*$)")


def binary() -> str | None:
    return shutil.which("prometheus")


def rules() -> list[dict]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def series_in(exprs: list[str]) -> list[str]:
    """Metric names these PromQL expressions read (as Prometheus stores them: _bucket, _total included)."""
    return sorted({name for expr in exprs for name in SERIES.findall(expr)})


def series_used() -> list[str]:
    """Metric names the alert rules read."""
    return series_in([rule["expr"] for rule in rules()])


# Grafana's own variables in the dashboard's queries, with a value that makes them plain PromQL.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__range": "1h", "$job": "cai-demo", "$instance": ".*"}


def dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def dashboard_exprs(dash: dict | None = None, plain: bool = False) -> dict[str, str]:
    """{"<panel title> / <refId>": PromQL} of every panel (rows' panels too); plain=True replaces
    Grafana's variables (GRAFANA_VARS) so promtool can parse them."""
    dash = dashboard() if dash is None else dash
    out = {}
    panels = [q for p in dash.get("panels", []) for q in [p, *p.get("panels", [])]]
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if plain:
                for var in sorted(GRAFANA_VARS, key=len, reverse=True):
                    expr = expr.replace(var, GRAFANA_VARS[var])
            out[f"{panel.get('title')} / {target.get('refId')}"] = expr
    return out


class PrometheusServer:
    def __init__(self, app_url: str, workdir: Path, auth: tuple[str, str] | None = None) -> None:
        exe = binary()
        if not exe:
            raise TargetError("prometheus is not installed (apt-get install prometheus)")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        url = urlparse(app_url)
        groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                rule.pop("for", None)  # fire at the first evaluation that holds
        (workdir / "alerts.yml").write_text(yaml.safe_dump(groups, sort_keys=False))
        job = {"job_name": "cai-demo", "metrics_path": "/metrics", "scheme": url.scheme or "http",
               "scrape_interval": "1s", "scrape_timeout": "900ms", "static_configs": [{"targets": [url.netloc]}]}
        if auth:
            job["basic_auth"] = {"username": auth[0], "password": auth[1]}
        config = {"global": {"evaluation_interval": "1s"}, "rule_files": ["alerts.yml"], "scrape_configs": [job]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [exe, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_http(f"{self.base_url}/-/ready", 30, alive=self._dead)
        except TargetError as exc:
            self.stop()
            raise TargetError(f"prometheus did not start: {exc}", self.log_path.read_text(errors="replace")[-2000:]) from None

    def _dead(self) -> str | None:
        code = self.popen.poll()
        return None if code is None else f"prometheus exited with code {code}"

    def query(self, expr: str) -> list[dict]:
        r = httpx.get(f"{self.base_url}/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def firing(self) -> set[str]:
        r = httpx.get(f"{self.base_url}/api/v1/alerts", timeout=10)
        r.raise_for_status()
        return {a["labels"]["alertname"] for a in r.json()["data"]["alerts"] if a["state"] == "firing"}

    def wait(self, condition, timeout: float, interval: float = 0.5) -> float | None:
        """Seconds until `condition()` holds, or None after `timeout`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if condition():
                return time.monotonic() - t0
            time.sleep(interval)
        return None

    def wait_scraped(self, timeout: float = 30) -> float | None:
        return self.wait(lambda: any(s["value"][1] == "1" for s in self.query('up{job="cai-demo"}')), timeout)

    def missing_series(self) -> list[str]:
        return [name for name in series_used() if not self.query(f'{name}{{job="cai-demo"}}')]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self._log.close()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def check(gate, prom: PrometheusServer, freeze, unfreeze, timeout: float = 30, scrape_timeout: float = 30) -> None:
    """Gate `monitoring.series_missing` (the series the rules read, from a real scrape) and
    `monitoring.alert_fired` (CaiDemoDown fires while the app is frozen and resolves after)."""
    scraped = prom.wait_scraped(scrape_timeout)
    missing = prom.missing_series() if scraped is not None else series_used()
    gate.measure("monitoring.series_missing", missing, soft=True,
                 detail=f"{len(series_used())} series the rules read; scraped after "
                        + (f"{scraped:.1f} s" if scraped is not None else f"never within {scrape_timeout:.0f} s"))
    already = prom.firing()
    freeze()
    try:
        fired = prom.wait(lambda: "CaiDemoDown" in prom.firing(), timeout)
    finally:
        unfreeze()
    resolved = prom.wait(lambda: "CaiDemoDown" not in prom.firing(), timeout) if fired is not None else None
    gate.measure(
        "monitoring.alert_fired", fired is not None and resolved is not None,
        detail=(f"firing before the fault: {sorted(already) or 'none'}; app frozen: CaiDemoDown "
                + (f"fired after {fired:.1f} s" if fired is not None else f"did not fire within {timeout:.0f} s")
                + (f", resolved {resolved:.1f} s after the app resumed" if resolved is not None else "")),
    )
