"""A deployment at a URL: nothing is started; memory and disk come from the app's own /metrics."""

from __future__ import annotations

from typing import Any

import httpx

from validation import api
from validation.targets.base import HEALTH_TIMEOUT_S, Say, Target, TargetError, _noop, wait_http
from validation.targets.resources import RSS_METRIC, VOLUME_METRIC, DiskUsage, metrics_values, metrics_volume_used


class UrlTarget(Target):
    kind = "url"

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None,
                 health_timeout: float = HEALTH_TIMEOUT_S, say: Say = _noop) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.auth, self.health_timeout, self._say = auth, health_timeout, say

    def start(self) -> UrlTarget:
        """Nothing is started: wait until the deployment answers. It may be waking up (Fly auto start,
        Cloud Run scale from zero): any answer but a connection error or a proxy's 5xx, not counted as
        start-up."""
        self._say(f"url target: {self.base_url} (nothing started); waiting for GET /health to answer")
        try:
            waited = wait_http(f"{self.base_url}/health", self.health_timeout, predicate=lambda r: r.status_code < 502)
        except TargetError as exc:
            raise TargetError(f"url target does not answer: {exc}") from None
        self._say(f"url target answers after {waited:.1f} s")
        return self

    def _metrics(self) -> httpx.Response:
        with api.Client(auth=self.auth, timeout=10) as c:
            return c.get(f"{self.base_url}/metrics")

    def resource_sample(self, cpu: bool = False) -> dict[str, Any] | None:
        """Memory of the app as it reports it in /metrics (process_resident_memory_bytes)."""
        r = self._metrics()
        r.raise_for_status()
        rss = metrics_values(r.text).get(RSS_METRIC)
        return None if rss is None else {"memory_bytes": int(rss), "source": f"/metrics {RSS_METRIC}"}

    def disk_usage(self) -> DiskUsage:
        """The used bytes of the file system that holds the checkpoint volume, as the app exports them
        (/metrics cai_checkpoint_volume_bytes{kind="used"}): on a platform, the volume (checkpoints, and the
        logs when they are on it); the image and the machine's root file system are not in it."""
        metric = f'{VOLUME_METRIC}{{kind="used"}}'
        source = f"{self.base_url}/metrics {metric}: the used bytes of the checkpoint volume's file system"
        try:
            r = self._metrics()
            r.raise_for_status()
        except httpx.HTTPError as exc:
            return DiskUsage(source, error=f"GET /metrics failed: {type(exc).__name__}: {exc}")
        used = metrics_volume_used(r.text)
        if used is None:
            return DiskUsage(source, skipped=f"url target: /metrics has no {metric} (a build without it?); "
                             "the deployment's disk cannot be seen from outside")
        return DiskUsage(source, {"checkpoint volume's file system, used": int(used)})
