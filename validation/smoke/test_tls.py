"""HTTPS on a live URL: certificate valid >= 14 days, http:// redirects to https://, HSTS.

    nox -s smoke -- --base-url https://cai-demo.fly.dev
    nox -s smoke -- --base-url https://host:8443 --http-url http://host:8080/   # redirect not on port 80
    SSL_CERT_FILE=ca.pem nox -s smoke -- --base-url https://...                 # a private CA

On a container or process target, or a plain-http URL, the three are recorded as skipped with the
reason — never as passed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from validation.checks import tls

pytestmark = pytest.mark.smoke


def _https_url(gate, request, cid: str) -> str:
    gate.require(cid)  # url target only: skipped with the reason on container and process
    url = request.getfixturevalue("target").base_url
    if urlsplit(url).scheme != "https":
        gate.skip(cid, f"plain http URL ({url}): no TLS to check")
    return url


def test_certificate_valid_long_enough(gate, target_kind, request):
    tls.cert_days(gate, _https_url(gate, request, "tls.cert_days"))


def test_http_redirects_to_https(gate, target_kind, request, pytestconfig):
    tls.http_redirect(gate, _https_url(gate, request, "tls.http_redirect"), pytestconfig.getoption("--http-url"))


def test_hsts(gate, target_kind, request, auth):
    tls.hsts(gate, _https_url(gate, request, "tls.hsts"), auth)
