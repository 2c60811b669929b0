"""The one way the gate's stub servers serve: an http.server on a free loopback port, from a daemon
thread, started and stopped by a context manager (the shape urllib3's dummyserver uses).

    class StubX(LoopbackServer):
        def __init__(self, ...):
            class Handler(BaseHTTPRequestHandler): ...
            super().__init__(Handler)
    with StubX(...) as stub: httpx.get(stub.base_url + "/health")

Used by validation/testing/stub_app.py (StubApp), validation/testing/stub_tls.py (RedirectServer) and
validation/testing/stub_ui.py (StubUI).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LoopbackServer:
    """`handler` served on 127.0.0.1 at a free port: `base_url` (no trailing slash), `server`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, poll_interval: float = 0.05, name: str | None = None) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": poll_interval}, name=name, daemon=True
        )

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
