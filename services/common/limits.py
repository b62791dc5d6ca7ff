"""Admission control: how many sessions a process takes, and what a refused client is told."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from services.common.errors import CodedError

from .ratelimit import refusal_reason

WS_TRY_AGAIN_LATER = 1013
WS_POLICY_VIOLATION = 1008  # what a rate-limited client is told: retrying at once will not help


class CapacityError(CodedError):
    """No session slot left: code `capacity`, HTTP 503 (a WebSocket is closed with 1013)."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__("capacity", message)


class SessionLimiter:
    """Counts open sessions; `slot()` refuses past `limit` instead of queueing, so a full
    replica answers at once and a load balancer or client can go elsewhere."""

    def __init__(self, limit: int, on_change=None, on_reject=None) -> None:
        self.limit = limit
        self.active = 0
        self._on_change = on_change
        self._on_reject = on_reject

    @property
    def full(self) -> bool:
        return self.active >= self.limit

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.full:
            if self._on_reject:
                self._on_reject()
            raise CapacityError(f"server at capacity ({self.limit} concurrent sessions)")
        self.active += 1
        if self._on_change:
            self._on_change(self.active)
        try:
            yield
        finally:
            self.active -= 1
            if self._on_change:
                self._on_change(self.active)


async def refuse_websocket(ws: WebSocket, reason: str) -> None:
    await ws.accept()
    await ws.close(code=WS_TRY_AGAIN_LATER, reason=reason[:120])


async def admit(
    ws: WebSocket,
    limiter: SessionLimiter,
    serve: Callable[[], Awaitable[None]],
    unavailable: str | None = None,
    on_capacity: Callable[[str], None] | None = None,
) -> None:
    """The one admission path of every WebSocket endpoint: refused with 1013 and a reason when
    the service cannot take a session now (`unavailable`: loading, shutting down) or is full;
    otherwise `serve()` runs holding a slot for the session's whole life."""
    if unavailable:
        await refuse_websocket(ws, unavailable)
        return
    if await refuse_rate_limited(ws):
        return
    try:
        async with limiter.slot():
            await serve()
    except CapacityError as exc:
        if on_capacity:
            on_capacity(str(exc))
        await refuse_websocket(ws, str(exc))


async def refuse_rate_limited(ws: WebSocket) -> bool:
    """Spends the client's token of the app's RateLimiter (see build_app); refused → 1008 + reason."""
    limiter = getattr(ws.app.state, "rate_limiter", None) if "app" in ws.scope else None
    if limiter is None or not limiter.enabled:
        return False
    wait = limiter.check(ws.scope)
    if not wait:
        return False
    await ws.accept()
    await ws.close(code=WS_POLICY_VIOLATION, reason=refusal_reason(wait))
    return True


def busy_response(reason: str, retry_after_s: int = 1) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "capacity", "message": reason}}, status_code=503, headers={"Retry-After": str(retry_after_s)}
    )


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one JSON error shape of every REST endpoint (OpenAI's: {"error": {code, message}})."""
    return JSONResponse({"error": {"code": code, "message": message, "type": "invalid_request_error"}}, status)
