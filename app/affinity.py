"""Session affinity on Fly.io, where the proxy spreads requests over an app's machines with no
stickiness. Gradio keeps a browser's session (its queue, its event stream) in one process, so the UI
must stay on one machine; the JSON API and the probes need not (any replica answers them from the
shared database, app/pgstore.py).

Each UI response that lacks it sets a cookie naming the machine that served it (FLY_MACHINE_ID, which
Fly sets on every machine). A later UI request that lands on another machine is answered with
`fly-replay: prefer_instance=<that machine>`, and Fly's proxy replays it there (fly.io/docs/networking/
dynamic-request-routing). A request the proxy has already replayed (`fly-replay-src`) is served where it
lands and pinned here: the machine the cookie named was stopped or gone.
"""

from __future__ import annotations

import json
import re
from http.cookies import CookieError, SimpleCookie

COOKIE = "cai_machine"
UNPINNED = ("/api/", "/health", "/ready", "/metrics")
_MACHINE = re.compile(r"^[0-9a-z]{1,32}$")  # Fly's machine ids are hex; anything else is not ours to echo


def pinned_machine(cookie_header: bytes) -> str | None:
    """The machine a browser's cookie pins it to, when it names one."""
    try:
        jar = SimpleCookie(cookie_header.decode("latin-1"))
    except CookieError:
        return None
    value = jar[COOKIE].value if COOKIE in jar else ""
    return value if _MACHINE.match(value) else None


class FlyReplay:
    """ASGI middleware: keep each browser's UI requests on the machine that first served it."""

    def __init__(self, app, machine_id: str):
        self.app = app
        self.machine = machine_id
        self.set_cookie = f"{COOKIE}={machine_id}; Path=/; HttpOnly; Secure; SameSite=Lax".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(UNPINNED):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        pinned = pinned_machine(headers.get(b"cookie", b""))
        if pinned == self.machine:
            return await self.app(scope, receive, send)
        if pinned and b"fly-replay-src" not in headers and scope["type"] == "http":
            return await self._replay(send, pinned)

        async def pin_here(message):
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", self.set_cookie)]}
            await send(message)
        return await self.app(scope, receive, pin_here)

    @staticmethod
    async def _replay(send, machine: str) -> None:
        """421 Misdirected Request: Fly's proxy acts on the header and the browser never sees it."""
        body = json.dumps({"error": "misdirected", "field": None,
                           "message": f"this session lives on machine {machine}; replay it there"}).encode()
        await send({"type": "http.response.start", "status": 421,
                    "headers": [(b"fly-replay", f"prefer_instance={machine}".encode()),
                                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
