"""A real Prometheus (Debian's) scrapes a fresh app with the repo's alert rules: the series the rules
read must exist, and freezing the app (SIGSTOP / docker pause) must fire CaiDemoDown, then resolve."""

from __future__ import annotations

import os
import signal

import pytest

from validation import prometheus
from validation.resilience.apps import wait_ready

pytestmark = pytest.mark.resilience
CRITERIA = ["monitoring.series_missing", "monitoring.alert_fired"]


def test_prometheus_scrapes_the_app_and_fires_on_a_frozen_app(gate, apps, target_kind, report_dir, say):
    gate.require(CRITERIA)
    if not prometheus.binary():
        gate.skip(CRITERIA, "prometheus is not installed (apt-get install prometheus)")
    app = apps.app()
    wait_ready(app.base_url)
    if target_kind == "container":
        freeze, unfreeze = app.container.pause, app.container.unpause
    else:
        def freeze():
            os.killpg(app.pid, signal.SIGSTOP)

        def unfreeze():
            os.killpg(app.pid, signal.SIGCONT)
    with prometheus.PrometheusServer(app.base_url, report_dir / "prometheus") as prom:
        say(f"prometheus {prom.base_url} scraping {app.base_url} every second (log {prom.log_path})")
        prometheus.check(gate, prom, freeze, unfreeze)
