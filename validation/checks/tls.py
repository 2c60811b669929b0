"""HTTPS on a live URL: the certificate's remaining days, plain http redirecting to https, HSTS.

Plain functions of (an https URL, a gate), like the other checks. Trust: the system's CA store, or the
file in SSL_CERT_FILE (as httpx and OpenSSL read it); a certificate that does not verify fails
`tls.cert_days` with the verification error. The smoke session calls these on an https URL target and
records them as skipped, with the reason, on anything else (validation/smoke/test_tls.py).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import time
from urllib.parse import urlsplit

import httpx

from validation import api
from validation.gate import Gate

# TLDs that the browsers' HSTS preload list holds whole (hstspreload.org; Google's registry TLDs): a
# browser never speaks plain http to any host under them, header or not. fly.dev, *.up.railway.app
# and *.run.app are under them.
PRELOADED_TLDS = ("app", "dev", "page", "new", "day", "foo")
REDIRECTS = (301, 302, 303, 307, 308)


def ssl_context() -> ssl.SSLContext:
    cafile = os.environ.get("SSL_CERT_FILE") or None
    return ssl.create_default_context(cafile=cafile)


def _host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    if u.scheme != "https" or not u.hostname:
        raise ValueError(f"not an https URL: {url}")
    return u.hostname, u.port or 443


def cert_days_left(url: str, timeout: float = 10.0) -> tuple[float, dict]:
    """Days until the verified certificate of `url`'s host expires, and the certificate (ssl's dict).
    Raises ssl.SSLCertVerificationError when it does not verify (expired, unknown issuer, wrong host)."""
    host, port = _host_port(url)
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            ssl_context().wrap_socket(sock, server_hostname=host) as tls:
        cert = tls.getpeercert()
    not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    return (not_after - time.time()) / 86400, cert


def cert_days(gate: Gate, url: str, timeout: float = 10.0) -> None:
    host, port = _host_port(url)
    try:
        days, cert = cert_days_left(url, timeout)
    except ssl.SSLCertVerificationError as exc:
        gate.fail("tls.cert_days", None, f"{host}:{port}: the certificate does not verify: {exc.verify_message or exc}")
    except (OSError, ssl.SSLError) as exc:
        gate.fail("tls.cert_days", None, f"{host}:{port}: no TLS handshake: {type(exc).__name__}: {exc}")
    issuer = dict(x[0] for x in cert.get("issuer", ())).get("organizationName") or \
        dict(x[0] for x in cert.get("issuer", ())).get("commonName", "?")
    gate.measure("tls.cert_days", round(days, 1), detail=f"{host}: notAfter {cert['notAfter']}, issuer {issuer}")


def http_redirect(gate: Gate, url: str, http_url: str | None = None, timeout: float = 10.0) -> None:
    """GET the plain-http address of the same host (default http://<host>/, port 80; `http_url` to
    name another) without following redirects: it must answer a redirect to https on that host."""
    host, _ = _host_port(url)
    http_url = http_url or f"http://{host}/"
    try:
        with api.Client(timeout=timeout) as c:
            r = c.get(http_url, follow_redirects=False)
    except httpx.HTTPError as exc:
        gate.measure("tls.http_redirect", False, detail=f"GET {http_url}: no answer ({type(exc).__name__}: {exc})")
        return
    loc = r.headers.get("location", "")
    target = urlsplit(loc)
    ok = r.status_code in REDIRECTS and target.scheme == "https" and target.hostname == host
    gate.measure("tls.http_redirect", ok, detail=f"GET {http_url} -> {r.status_code}" + (f" Location {loc}" if loc else ""))


def hsts_max_age(header: str) -> int | None:
    m = re.search(r"max-age\s*=\s*\"?(\d+)", header or "", re.IGNORECASE)
    return int(m.group(1)) if m else None


def hsts(gate: Gate, url: str, auth: tuple[str, str] | None = None, timeout: float = 10.0) -> None:
    """`header` when GET /health over https carries Strict-Transport-Security with max-age > 0, else
    `preloaded-tld` when the host is under a wholly preloaded TLD, else `none`."""
    host, _ = _host_port(url)
    try:
        with api.Client(auth=auth, verify=ssl_context(), timeout=timeout) as c:
            r = c.get(url.rstrip("/") + "/health")
    except httpx.HTTPError as exc:
        gate.fail("tls.hsts", None, f"GET {url}/health: no answer ({type(exc).__name__}: {exc})")
    header = r.headers.get("strict-transport-security", "")
    age = hsts_max_age(header)
    tld = host.rsplit(".", 1)[-1].lower()
    zero = " (max-age=0)" if header else ""
    if age:
        measured, detail = "header", f"Strict-Transport-Security: {header}"
    elif tld in PRELOADED_TLDS:
        measured, detail = "preloaded-tld", f"no header{zero}; .{tld} is on the browsers' HSTS preload list"
    else:
        measured = "none"
        detail = f"no Strict-Transport-Security header{zero} on GET /health ({r.status_code}); .{tld} is not a preloaded TLD"
    gate.measure("tls.hsts", measured, detail=detail)
