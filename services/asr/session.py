"""`/v1/asr/stream`: our own WebSocket protocol (docs/asr.md), a thin adapter over the session core.

Text frames are JSON messages (`config`, `flush`, `end`, `keepalive`), binary frames raw audio;
the core's messages go out as JSON text, each with `session_id`. The receive loop, frame bounds,
guarded JSON decode and error mapping are the shared ones (services.common.ws_endpoint).
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.websockets import WebSocket

from services.common.errors import CodedError
from services.common.protocol.base import Message, ProtocolError, check_fields
from services.common.server import SessionRegistry
from services.common.validate import InputError
from services.common.ws_endpoint import WebSocketEndpoint

from .config import ASRConfig
from .core import Closed, Output, SessionCore, log
from .engines import Engines

CLIENT_MESSAGES = "config, flush, end, keepalive"


class StreamSession(WebSocketEndpoint):
    def __init__(self, ws: WebSocket, config: ASRConfig, engines: Engines, registry: SessionRegistry) -> None:
        super().__init__(
            ws, max_frame_bytes=config.common.max_frame_bytes, idle_timeout_s=config.common.idle_timeout_s, logger=log
        )
        self.core = SessionCore(config, engines, registry)
        self.session_id = self.core.id
        self._timed_out = False

    # ------------------------------------------------------------ core → wire
    async def _send(self, event: Output) -> None:
        if isinstance(event, Closed):
            with contextlib.suppress(Exception):
                await self.ws.close(code=event.code, reason=event.reason)
        elif isinstance(event, Message):
            await self.ws.send_text(event.to_json())

    async def send_error(self, error: CodedError) -> None:
        self.core.report(error)

    # ------------------------------------------------------------ wire → core
    async def on_connect(self) -> None:
        self.core.open(self._send)

    async def on_disconnect(self, code: int | None) -> None:
        await self.core.close()

    async def on_idle(self) -> bool:
        if self._timed_out or self.core.ending:
            return False  # the client answers nothing, not even our close
        self._timed_out = True
        await self.core.idle_timeout(self.idle_timeout_s or 0.0)
        return True

    def too_large(self, size: int, binary: bool) -> CodedError:
        limit = self.max_frame_bytes
        if binary:
            return InputError("frame_too_large", f"audio frame of {size} bytes is over MAX_FRAME_BYTES ({limit})")
        return InputError("frame_too_large", f"text message over MAX_FRAME_BYTES ({limit})")

    async def on_bytes(self, data: bytes) -> None:
        await self.core.audio(data)

    async def on_json(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "config":
            self.core.configure_message(data)
        elif kind in ("flush", "end", "keepalive"):
            check_fields(data, set(), kind)
            if kind == "flush":
                await self.core.flush()
            elif kind == "end":
                await self.core.end()
        else:
            raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected one of {CLIENT_MESSAGES}")
