"""Rate limiting per client: one token bucket per API key (or, without a key, per client address).

Why a token bucket: a client may burst (a page opening three sockets at once) but not sustain
more than `per_min` requests a minute. One token is one HTTP request or one WebSocket opening;
messages inside an admitted WebSocket are bounded by the session's own limits, not here.

The key is the API key only when auth is on and the key is valid (auth runs first), so a client
cannot dodge its bucket by sending a new made-up key with each request; without auth it is the
client address as `services.common.client_addr` decided it (the peer, or behind a trusted proxy
the address it forwarded). Buckets live in a bounded LRU, so a scan from many addresses cannot grow memory.
Refused: REST → 429 with `Retry-After` and the JSON error shape; WebSocket → accepted and closed
with 1008 and a reason saying when to retry (see `services.common.limits.admit`).
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import key_from_scope, key_is_valid
from .client_addr import client_host

MAX_CLIENTS = 10_000
EXEMPT_PATHS = ("/health", "/ready", "/metrics")  # probes and scrapers are not clients


class RateLimiter:
    """Token buckets keyed by client. `per_min` = 0 turns the limiter off."""

    def __init__(
        self,
        per_min: int,
        burst: int = 0,
        keys: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.rate = per_min / 60.0  # tokens per second
        self.capacity = float(burst or per_min)
        self.keys = tuple(keys)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client → (tokens, at)
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def client(self, scope: Scope) -> str:
        key = key_from_scope(scope)
        if self.keys and key_is_valid(key, self.keys):
            return "key:" + key
        return "addr:" + client_host(scope)

    def take(self, client: str) -> float:
        """Spends one token of `client`: 0.0 when allowed, else the seconds until one is back."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._remember(client, (tokens - 1.0, now))
            return 0.0
        self._remember(client, (tokens, now))
        self.refused += 1
        return (1.0 - tokens) / self.rate

    def _remember(self, client: str, state: tuple[float, float]) -> None:
        self._buckets[client] = state
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)

    def check(self, scope: Scope) -> float:
        return self.take(self.client(scope))


def retry_after(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


def refusal_reason(wait_s: float) -> str:
    return f"rate limit exceeded; retry in {retry_after(wait_s)} s"


class RateLimitMiddleware:
    """REST side of the limiter (WebSockets are refused at admission, with a close reason)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, exempt: Iterable[str] = EXEMPT_PATHS) -> None:
        self.app = app
        self.limiter = limiter
        self.exempt = tuple(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.limiter.enabled
            or scope["path"] in self.exempt
            or scope.get("method") == "OPTIONS"  # CORS preflights carry no key and are cheap
        ):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.check(scope)
        if not wait:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": {"code": "rate_limited", "message": refusal_reason(wait), "type": "rate_limit_error"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", str(retry_after(wait)).encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
