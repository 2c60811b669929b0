"""HTTPS subjects for the TLS checks' self-tests (tests/test_gate_tls.py): a self-signed certificate made
with the openssl CLI (any lifetime, any names), the StubApp served over TLS with it, and a plain-http
server that redirects (or not).

    cert = make_cert(tmp_path, days=5)                     # Cert(cert, key): the cert is its own CA
    with https_stub(cert, headers={"Strict-Transport-Security": "max-age=63072000"}) as stub:
        stub.base_url                                      # https://127.0.0.1:PORT
    with RedirectServer("https://127.0.0.1:PORT/") as http: http.url
"""

from __future__ import annotations

import ssl
from http.server import BaseHTTPRequestHandler
from typing import Any

from validation.targets.proxy import Cert, make_cert  # noqa: F401 - the self-tests' certificates too
from validation.testing.server import LoopbackServer
from validation.testing.stub_app import StubApp


def https_stub(cert: Cert, **kwargs: Any) -> StubApp:
    """A StubApp (not started) whose listening socket speaks TLS with `cert`; base_url is https://."""
    stub = StubApp(**kwargs)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)
    stub.server.socket = ctx.wrap_socket(stub.server.socket, server_side=True)
    stub.base_url = stub.base_url.replace("http://", "https://", 1)
    return stub


class RedirectServer(LoopbackServer):
    """Plain http on a free loopback port: every GET answers `status` with Location `to` (status 200 and
    no Location when `to` is None: a site that serves plain http)."""

    def __init__(self, to: str | None, status: int = 301) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = b"plain http\n"
                self.send_response(status if to else 200)
                if to:
                    self.send_header("Location", to)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.url = self.base_url + "/"
