"""The url target's local proxy (validation/targets/proxy.py) and the `targets` session's options."""

from __future__ import annotations

import importlib.util
import shutil

import httpx
import pytest

from validation.targets import TargetError
from validation.targets.proxy import edge_proxy, haproxy_binary
from validation.testing.stub_app import StubApp

needs_haproxy = pytest.mark.skipif(
    not shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin"), reason="haproxy not installed (apt-get install haproxy)"
)


@needs_haproxy
def test_the_proxy_forwards_to_the_app_and_says_who_asked():
    with StubApp(build="b-42") as app, edge_proxy(app.base_url.removeprefix("http://")) as url:
        assert url != app.base_url
        r = httpx.get(f"{url}/health", timeout=10)
        assert r.status_code == 200 and r.json()["build"] == "b-42"
        assert app.requests[-1].endswith("/health")


@needs_haproxy
def test_the_proxy_answers_503_when_the_app_is_gone():
    with StubApp() as app, edge_proxy(app.base_url.removeprefix("http://")) as url:
        app.stop()
        assert httpx.get(f"{url}/health", timeout=10).status_code == 503


def test_a_proxy_in_front_of_nothing_fails_naming_what_it_waited_for():
    with pytest.raises(TargetError, match="/health"), edge_proxy("127.0.0.1:1", health_timeout=1):
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
