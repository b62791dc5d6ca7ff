"""A request-head timeout for uvicorn's h11 protocol.

uvicorn (0.54) has `timeout_keep_alive`, but that timer only runs between requests and is
cancelled by the first byte of the next one; nothing times out a connection that sends half a
request line and then nothing (a slowloris or a half-open socket), so each such connection is
held forever. `h11_max_incomplete_event_size` bounds the *size* of a head, not its duration.
This protocol closes a connection whose request head is not complete `header_timeout_s` after
the connection opened or after its previous response ended. Once a head is complete the timer
is off: the body, a streamed response or a WebSocket are governed by the app's own limits.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0  # set per server by `with_header_timeout`

    _head_timer: asyncio.TimerHandle | None = None
    _heads_seen: int = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        armed_at = self._heads_seen
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout, armed_at)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self, armed_at: int) -> None:
        self._head_timer = None
        if self._heads_seen == armed_at and not self.transport.is_closing():
            self.transport.close()  # no complete request head in time: drop the connection

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request head was parsed (a new cycle started)
            self._heads_seen += 1
            self._cancel_head_timer()

    def handle_websocket_upgrade(self, event) -> None:  # type: ignore[override]
        self._heads_seen += 1
        self._cancel_head_timer()  # the socket belongs to the WebSocket protocol from here
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def with_header_timeout(seconds: float) -> type[HeadTimeoutH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` with this head timeout."""
    return type("HeadTimeoutH11Protocol", (HeadTimeoutH11Protocol,), {"header_timeout_s": seconds})
