"""The url target's local proxy (validation/targets/proxy.py) and the `targets` session's options."""

from __future__ import annotations

import importlib.util
import shutil
import time

import httpx
import pytest

from validation.targets import TargetError
from validation.targets.proxy import edge_cert, edge_proxy, haproxy_binary
from validation.testing.stub_app import StubApp

needs_haproxy = pytest.mark.skipif(
    not shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin"), reason="haproxy not installed (apt-get install haproxy)"
)


@needs_haproxy
def test_the_proxy_terminates_tls_sends_hsts_and_redirects_plain_http(tmp_path):
    cert = edge_cert(tmp_path)
    with StubApp(build="b-42") as app, edge_proxy(app.base_url.removeprefix("http://"), cert) as edge:
        assert edge.url.startswith("https://127.0.0.1:")
        r = httpx.get(f"{edge.url}/health", verify=str(cert.cert), timeout=10)
        assert r.status_code == 200 and r.json()["build"] == "b-42"
        assert "max-age=" in r.headers["strict-transport-security"]
        assert app.requests[-1].endswith("/health")
        plain = httpx.get(f"{edge.http_url}health", timeout=10)
        assert plain.status_code == 301 and plain.headers["location"] == f"{edge.url}/health"
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the run's own CA
            httpx.get(f"{edge.url}/health", timeout=10)


@needs_haproxy
def test_the_proxy_answers_503_when_the_app_is_gone(tmp_path):
    with StubApp() as app, edge_proxy(app.base_url.removeprefix("http://"), edge_cert(tmp_path)) as edge:
        app.stop()
        assert httpx.get(f"{edge.url}/health", verify=False, timeout=10).status_code == 503


@needs_haproxy
def test_several_replicas_the_ui_sticks_to_one_the_api_goes_round_robin_and_a_dead_one_is_skipped(tmp_path):
    cert = edge_cert(tmp_path)
    with StubApp() as one, StubApp() as two, \
            edge_proxy([a.base_url.removeprefix("http://") for a in (one, two)], cert) as edge:
        def hits(path: str, n: int, client: httpx.Client) -> tuple[int, int]:  # not counting the health checks
            served = lambda app: sum(not r.endswith("/health") for r in app.requests)  # noqa: E731
            before = (served(one), served(two))
            for _ in range(n):
                assert client.get(f"{edge.url}{path}").status_code == 200
            return served(one) - before[0], served(two) - before[1]

        with httpx.Client(verify=str(cert.cert), timeout=10) as browser:  # keeps the affinity cookie
            assert sorted(hits("/", 6, browser)) == [0, 6]
        with httpx.Client(verify=str(cert.cert), timeout=10) as api:
            api.cookies.set("CAI_REPLICA", "r1")  # a sticky cookie does not pin /api/
            assert hits("/api/models", 6, api) == (3, 3)
            two.stop()
            time.sleep(3)  # two failed checks a second apart take it out
            assert hits("/api/models", 4, api) == (4, 0)


@needs_haproxy
def test_a_proxy_in_front_of_nothing_fails_naming_what_it_waited_for(tmp_path):
    with pytest.raises(TargetError, match="/health"), edge_proxy("127.0.0.1:1", edge_cert(tmp_path), health_timeout=1):
        pass


def test_a_missing_haproxy_is_named_with_its_package(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(TargetError, match="apt-get install haproxy"):
        haproxy_binary()


def _noxfile():
    spec = importlib.util.spec_from_file_location("noxfile_under_test", "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_targets_session_replaces_the_target_options():
    strip = _noxfile()._without_target
    assert strip(["--target", "container", "--profile", "ci", "--base-url=http://x", "-k", "t"]) == [
        "--profile", "ci", "-k", "t"]
    assert strip(["--target=url", "--base-url", "http://x"]) == []
