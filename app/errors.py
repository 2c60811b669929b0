"""The one error type the app raises for a request it cannot serve: status, field, message."""

from __future__ import annotations


class ApiError(Exception):
    """Becomes a JSON answer {"error", "field", "message"} with this status (never a traceback)."""

    def __init__(self, status: int, field: str | None, message: str, *, error: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.error = error or {400: "invalid_json", 403: "forbidden", 404: "not_found", 409: "busy", 413: "too_large",
                               422: "invalid_input", 429: "rate_limited", 507: "insufficient_storage"}.get(status, "error")
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict:
        return {"error": self.error, "field": self.field, "message": self.message, **self.extra}
