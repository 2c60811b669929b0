"""The HTTPS checks (validation/checks/tls.py) against local TLS servers with certificates made here by
the openssl CLI: a 90-day certificate passes tls.cert_days, a 5-day one fails it, an untrusted or
wrong-host one fails with the verification error; a redirecting http server passes tls.http_redirect,
one that serves plain http fails it; HSTS present passes, absent or max-age=0 fails. Then the smoke
session end to end: on an https URL the three are measured, on a plain-http URL they are skipped with
the reason. ~10 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from validation.checks import tls
from validation.testing import expect_failure, make_gate
from validation.testing.stub_app import StubApp
from validation.testing.stub_tls import RedirectServer, https_stub, make_cert

ROOT = Path(__file__).resolve().parents[1]
HSTS = {"Strict-Transport-Security": "max-age=63072000; includeSubDomains"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {
        "long": make_cert(d, 90, name="long"),
        "short": make_cert(d, 5, name="short"),
        "other_host": make_cert(d, 90, names="DNS:other.example", name="other"),
    }


def gate():
    return make_gate("plan", target_kind="url")


def test_cert_days_passes_on_a_90_day_certificate(certs, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["long"].cert))
    with https_stub(certs["long"]) as stub:
        g = gate()
        tls.cert_days(g, stub.base_url)
    (r,) = g.recorder.results
    assert r.verdict == "pass" and 89 < r.measured <= 90


def test_cert_days_fails_on_a_5_day_certificate(certs, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["short"].cert))
    with https_stub(certs["short"]) as stub:
        expect_failure(tls.cert_days, gate(), stub.base_url, criterion="tls.cert_days", measured="5 days")


@pytest.mark.parametrize("case", ["untrusted", "other_host"])
def test_cert_days_fails_when_the_certificate_does_not_verify(certs, monkeypatch, case):
    if case == "untrusted":  # the system CAs do not know our self-signed certificate
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        served = certs["long"]
    else:
        monkeypatch.setenv("SSL_CERT_FILE", str(certs["other_host"].cert))
        served = certs["other_host"]
    with https_stub(served) as stub:
        err = expect_failure(tls.cert_days, gate(), stub.base_url, criterion="tls.cert_days")
    assert "does not verify" in str(err)
    assert ("self-signed" in str(err) or "issuer" in str(err)) if case == "untrusted" else "mismatch" in str(err)


def test_http_redirect_passes_on_a_redirect_to_https(certs, monkeypatch):
    url = "https://127.0.0.1:8443"
    with RedirectServer(url + "/") as http:
        g = gate()
        tls.http_redirect(g, url, http.url)
    assert g.recorder.results[0].verdict == "pass" and "301 Location https://" in g.recorder.results[0].detail


@pytest.mark.parametrize("to", [None, "http://127.0.0.1:8443/", "https://elsewhere.example/"])
def test_http_redirect_fails_when_http_is_served_or_redirected_elsewhere(to):
    with RedirectServer(to) as http:
        expect_failure(tls.http_redirect, gate(), "https://127.0.0.1:8443", http.url, criterion="tls.http_redirect",
                       measured="no")


def test_http_redirect_fails_when_nothing_answers_on_http():
    server = RedirectServer(None)
    url = server.url
    server.server.server_close()  # never started: the port is closed
    err = expect_failure(tls.http_redirect, gate(), "https://127.0.0.1:8443", url, criterion="tls.http_redirect")
    assert "no answer" in str(err)


def test_hsts_header_passes_and_its_absence_fails(certs, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["long"].cert))
    with https_stub(certs["long"], headers=HSTS) as stub:
        g = gate()
        tls.hsts(g, stub.base_url)
    assert g.recorder.results[0].measured == "header" and g.recorder.results[0].verdict == "pass"
    for headers in ({}, {"Strict-Transport-Security": "max-age=0"}):
        with https_stub(certs["long"], headers=headers) as stub:
            expect_failure(tls.hsts, gate(), stub.base_url, criterion="tls.hsts", measured="none")


def test_hsts_max_age_parsing():
    assert tls.hsts_max_age("max-age=31536000; includeSubDomains") == 31536000
    assert tls.hsts_max_age('includeSubDomains; max-age="600"') == 600
    assert tls.hsts_max_age("includeSubDomains") is None


# --- the smoke session end to end -----------------------------------------------------------------


def run_smoke_tls(base_url: str, report_dir: Path, env: dict, *extra: str) -> tuple[int, str, dict]:
    cmd = [sys.executable, "-m", "pytest", "validation/smoke", "-k", "tls", "--base-url", base_url,
           "--report-dir", str(report_dir), "-p", "no:cacheprovider", "-p", "no:playwright", "-p", "no:locust", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GATE_SESSION": "smoke", **env})
    report = json.loads((report_dir / "report.json").read_text())
    return proc.returncode, proc.stdout + proc.stderr, {r["id"]: r for r in report["rows"]}


def test_smoke_measures_tls_on_an_https_url(certs, tmp_path):
    with https_stub(certs["short"], headers=HSTS) as stub, RedirectServer(stub.base_url + "/") as http:
        code, out, rows = run_smoke_tls(stub.base_url, tmp_path, {"SSL_CERT_FILE": str(certs["short"].cert)},
                                        "--http-url", http.url)
    assert code == 1, out  # the 5-day certificate
    assert rows["tls.cert_days"]["verdict"] == "fail" and rows["tls.cert_days"]["measured"] == "5 days"
    assert rows["tls.http_redirect"]["verdict"] == "pass" and rows["tls.hsts"]["verdict"] == "pass"
    assert "[tls.cert_days] FAILED" in out


def test_smoke_skips_tls_on_a_plain_http_url_with_the_reason(tmp_path):
    with StubApp() as stub:
        code, out, rows = run_smoke_tls(stub.base_url, tmp_path, {})
    assert code == 0, out
    for cid in ("tls.cert_days", "tls.http_redirect", "tls.hsts"):
        assert rows[cid]["verdict"] == "skip" and "plain http URL" in rows[cid]["note"], rows[cid]
