"""`python -m validation.testing.serve_stub`: the stub app served the way `python -m app` serves, on
GRADIO_SERVER_PORT until SIGTERM, with STUB_FAULTS (comma-separated StubApp faults). The targets'
self-tests start it as a process target (GATE_APP_MODULE=validation.testing.serve_stub)."""

from __future__ import annotations

import os
import signal
import threading
from http.server import ThreadingHTTPServer

from validation.testing.stub_app import StubApp


def main() -> None:
    stub = StubApp(faults={f for f in os.environ.get("STUB_FAULTS", "").split(",") if f})
    handler = stub.server.RequestHandlerClass
    stub.server.server_close()  # the stub's own free port: serve on the one the target chose instead
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["GRADIO_SERVER_PORT"])), handler)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stopped.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
