"""One way to open a WebSocket to any of our services: URL shape, API key, retries, size caps."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State

from .backoff import Backoff, retry

log = logging.getLogger("voice.client")

# errors worth another try: refused/reset sockets, a 503 during start-up, a slow handshake
RETRYABLE = (OSError, InvalidHandshake, TimeoutError)
DEFAULT_MAX_SIZE = 16 * 1024 * 1024


def stream_url(base: str, path: str) -> str:
    """`http://h:8001` or `ws://h:8001` → `ws://h:8001/v1/asr/stream`; a URL that already has a
    path is used as given (so a user behind a proxy with a prefix can pass the full URL)."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    full_path = parts.path if parts.path not in ("", "/") else path
    return urlunsplit((scheme, parts.netloc, full_path, parts.query, ""))


def http_url(base: str) -> str:
    parts = urlsplit(base)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def open_ws(
    url: str,
    api_key: str | None = None,
    backoff: Backoff | None = None,
    open_timeout: float = 5.0,
    max_size: int = DEFAULT_MAX_SIZE,
) -> ClientConnection:
    """Connects, retrying with `backoff` (None = one attempt). The key goes in the Bearer header."""

    async def attempt() -> ClientConnection:
        return await connect(
            url,
            additional_headers=auth_headers(api_key),
            open_timeout=open_timeout,
            max_size=max_size,
            proxy=None,
            ping_interval=20,
            ping_timeout=20,
        )

    def on_retry(n: int, wait: float, exc: BaseException) -> None:
        log.info("connect to %s failed (%s), retry %d in %.2fs", url, type(exc).__name__, n, wait)

    if backoff is None:
        return await attempt()
    return await retry(attempt, backoff, RETRYABLE, on_retry)


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


async def close_ws(ws: ClientConnection | None, timeout: float = 2.0) -> None:
    """Closes politely, but never waits long or raises: the peer may already be gone.

    A peer that does not answer the close within `timeout` (it stopped reading: a service busy
    writing to us while we no longer read) gets its TCP connection aborted. Only aborting ends
    it: `ws.close()` cut short by the timeout (or by a cancelled task) leaves the socket open
    for good, and such a peer then waits on its own writes forever, holding its session."""
    if ws is None:
        return
    try:
        await asyncio.wait_for(ws.close(), timeout)
    except (asyncio.TimeoutError, ConnectionClosed, OSError):
        pass
    finally:
        if ws.state is not State.CLOSED and ws.transport is not None:
            ws.transport.abort()
