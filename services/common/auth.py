"""API-key check for HTTP and WebSocket, as one ASGI middleware.

Browsers cannot set headers on a WebSocket, so a key is also accepted as `?api_key=` there, and
only there: on plain HTTP a query key would land in access logs, proxy logs and browser history,
so REST clients must send the `Authorization: Bearer` header.
A refused WebSocket is accepted and then closed with 1008, because a close before accept turns
into an HTTP 403 that most WebSocket clients report without the reason.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

WS_POLICY_VIOLATION = 1008


def key_from_scope(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            if text.lower().startswith("bearer "):
                return text[7:].strip()
    if scope.get("type") != "websocket":
        return None
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "api_key" in query:
        return query["api_key"][0]
    return None


def key_is_valid(key: str | None, keys: Iterable[str]) -> bool:
    if not key:
        return False
    # compare against every key so the time taken does not tell which prefix matched
    ok = False
    for candidate in keys:
        ok |= hmac.compare_digest(key.encode(), candidate.encode())
    return ok


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: Iterable[str], exempt: Iterable[str] = ("/health",)) -> None:
        self.app = app
        self.keys = tuple(keys)
        self.exempt = tuple(exempt)

    def _exempt(self, path: str) -> bool:
        return any(path == p or (p.endswith("/") and path.startswith(p)) for p in self.exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys or self._exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if key_is_valid(key_from_scope(scope), self.keys):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": "invalid or missing API key"})
            return
        body = json.dumps({"error": {"code": "unauthorized", "message": "invalid or missing API key"}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
