"""The one WebSocket receive loop of every endpoint (ASR, TTS, agent, Twilio, OpenAI Realtime).

Shaped like Starlette's `WebSocketEndpoint` (connect / receive / disconnect hooks), but built
for long-lived sessions that must survive bad input: each hand-written loop used to differ in
how it bounded frames, decoded JSON, timed out and mapped errors, and each got one of them
wrong. Here it is done once.

Contract (what a subclass gets):

- `run()` is called after `ws.accept()` (admission stays with `services.common.limits.admit`).
  It awaits `on_connect()`, then reads frames until the peer disconnects, `stop()` is called,
  or `on_idle()` says to stop; `on_disconnect()` runs last, always (also on cancellation).
- Every frame is bounded before it is decoded: over `max_frame_bytes` → `too_large()` error,
  the frame is dropped, the session goes on.
- Text frames must be valid UTF-8. The uvicorn protocol below hands invalid bytes to the app
  as lone surrogates instead of logging a traceback and dropping the connection with 1007,
  so they reach here and become an `bad_json` error like any other bad message.
- Text frames are decoded by `parse_text()`, by default through
  `services.common.validate.parse_json_object` (bounded nesting, no lone surrogates, a string
  `type`), then passed to `on_json(dict)`. Binary frames go to `on_bytes(bytes)`. A subclass
  that takes only one kind leaves the other hook alone: its default answers `unexpected_frame`.
- Errors raised by a hook: a `CodedError` becomes `send_error(error)` (the protocol's own error
  shape: an `error` event, an OpenAI error object, a log line for Twilio) and the session goes
  on; if `error.fatal`, the socket is closed with `close_code_for(error)` (1011 by default) and
  the loop ends. Any other exception is a bug: it is logged once without its message (which may
  hold user text: only the type and the code location are logged), the client gets an error
  `internal`, and the session goes on unless `internal_errors_fatal` is set.
- Idle: no frame for `idle_timeout_s` → `on_idle()`. The default sends a fatal `idle_timeout`
  error, closes with 1000 "idle timeout" and stops; a subclass may finish work first, or return
  True to keep reading (e.g. to wait for the client's close after its own).
- The base never sends anything but through `send_error()` and `close()`: sending (ordering,
  locks, outboxes) stays with the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from typing import Any, ClassVar

from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from services.common import logs
from services.common.errors import CodedError
from services.common.validate import InputError, parse_json_object

WS_NORMAL = 1000
WS_GOING_AWAY = 1001
WS_INTERNAL_ERROR = 1011

log = logging.getLogger("voice.ws")


class WebSocketEndpoint:
    """Base of one WebSocket session's receive side; see the module docstring for the contract."""

    internal_errors_fatal: ClassVar[bool] = False

    def __init__(
        self,
        ws: WebSocket,
        *,
        max_frame_bytes: int,
        idle_timeout_s: float | None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.ws = ws
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s
        self.log = logger or log
        self.session_id = ""  # set by the subclass; every log line of the base carries it
        self._running = True

    # ------------------------------------------------------------ hooks
    async def on_connect(self) -> None:
        """Right after accept, before the first frame is read (e.g. send `ready`)."""

    async def on_json(self, data: dict[str, Any]) -> None:
        """A text frame, decoded by `parse_text()`."""
        raise InputError("unexpected_frame", "this endpoint takes binary frames only")

    async def on_bytes(self, data: bytes) -> None:
        """A binary frame, within `max_frame_bytes`."""
        raise InputError("unexpected_frame", "this endpoint takes JSON text frames only")

    async def on_idle(self) -> bool:
        """Nothing received for `idle_timeout_s`. Return True to keep reading, False to stop."""
        message = f"no message for {self.idle_timeout_s:g} s; closing"
        await self.send_error(InputError("idle_timeout", message, fatal=True))
        await self.close(WS_NORMAL, "idle timeout")
        return False

    async def on_disconnect(self, code: int | None) -> None:
        """Always last: the peer's close code, or None when the loop ended on our side."""

    async def send_error(self, error: CodedError) -> None:
        """The protocol's error shape for `error`. Subclasses must implement it."""
        raise NotImplementedError

    def parse_text(self, text: str) -> dict[str, Any]:
        """A valid-UTF-8 text frame → the message dict; InputError if it is not one."""
        return parse_json_object(text)

    def too_large(self, size: int, binary: bool) -> CodedError:
        kind = "binary frame" if binary else "text message"
        return InputError("frame_too_large", f"{kind} of {size} bytes is over MAX_FRAME_BYTES ({self.max_frame_bytes})")

    def close_code_for(self, error: CodedError) -> int:
        return WS_INTERNAL_ERROR

    # ------------------------------------------------------------ the loop
    def stop(self) -> None:
        """End the loop after the frame being handled (e.g. the protocol's own `stop` message)."""
        self._running = False

    async def close(self, code: int = WS_NORMAL, reason: str = "") -> None:
        """Close the socket; a socket already gone is not an error."""
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason[:120])

    async def run(self) -> None:
        peer_code: int | None = None
        try:
            await self._guarded(self.on_connect())
            while self._running:
                try:
                    message = await asyncio.wait_for(self.ws.receive(), timeout=self.idle_timeout_s)
                except asyncio.TimeoutError:
                    if not await self.on_idle():
                        return
                    continue
                except (RuntimeError, WebSocketDisconnect):  # receive after a close
                    return
                if message["type"] == "websocket.disconnect":
                    peer_code = message.get("code")
                    return
                await self._guarded(self._frame(message))
        finally:
            await self.on_disconnect(peer_code)

    async def _frame(self, message: dict[str, Any]) -> None:
        data = message.get("bytes")
        if data is not None:
            if len(data) > self.max_frame_bytes:
                raise self.too_large(len(data), binary=True)
            await self.on_bytes(data)
            return
        text = message.get("text")
        if text is None:
            return
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError("bad_json", "text frames must be valid UTF-8") from None
        if len(raw) > self.max_frame_bytes:
            raise self.too_large(len(raw), binary=False)
        await self.on_json(self.parse_text(text))

    async def _guarded(self, step) -> None:
        """Run one hook, mapping what it raises (the error mapping of the contract)."""
        try:
            await step
        except CodedError as error:
            await self.send_error(error)
            if error.fatal:
                await self.close(self.close_code_for(error), error.code)
                self.stop()
        except (asyncio.CancelledError, WebSocketDisconnect):
            raise
        except Exception as exc:
            # the exception's message may quote user input: log its type and where, not its text
            where = traceback.extract_tb(exc.__traceback__)[-1:] or [None]
            place = f"{where[0].filename}:{where[0].lineno}" if where[0] else "?"
            logs.event(
                self.log,
                "unexpected error in session",
                logging.ERROR,
                session_id=self.session_id,
                error=type(exc).__name__,
                at=place,
            )
            fatal = self.internal_errors_fatal
            with contextlib.suppress(Exception):
                message = "internal error; the message was not processed"
                await self.send_error(CodedError("internal", message, fatal=fatal))
            if fatal:
                await self.close(WS_INTERNAL_ERROR, "internal error")
                self.stop()


class TolerantWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-io WebSocket protocol, except that a text frame of invalid UTF-8 reaches
    the app (as lone surrogates, which `WebSocketEndpoint` answers with an error event) instead
    of an ERROR traceback in the log and a 1007 close. Pass it as `uvicorn.Config(ws=...)`."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                self.frames = []
                text = bytes(data).decode("utf-8", "surrogateescape")
                self.queue.put_nowait({"type": "websocket.receive", "text": text})
                if not self.read_paused:
                    self.read_paused = True
                    self.transport.pause_reading()
                return
        super().send_receive_event_to_app()
