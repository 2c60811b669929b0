"""The url target's local proxy (validation/targets/proxy.py) and the `targets` session's options."""

from __future__ import annotations

import importlib.util
import shutil

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
