"""What every Wyoming server here shares (ASR and TTS): bounded event reads and the guarded loop.

Wyoming (the protocol of Home Assistant's voice pipeline) is JSON-lines over TCP: a header line
`{"type", "data"?, "data_length"?, "payload_length"?}`, then `data_length` bytes of JSON, then
`payload_length` bytes of payload. The wyoming package's own reader trusts those lengths and
parses with `json.loads`; here every read is bounded before it is done (the header line by the
stream's line limit, `data` by MAX_DATA_BYTES, the payload by the service's MAX_FRAME_BYTES) and
JSON goes through the one guarded parser (bounded nesting, no lone surrogates).

`GuardedHandler` is the receive loop: an idle timeout (`on_idle`), a CodedError from a handler becomes a
Wyoming `error` event (`text`, `code`) and the connection goes on; an error that leaves the byte
stream out of step (`resync=False`) or is fatal ends it; any other exception is a bug, logged by
type only (its message may quote client text) and answered `internal`. Writes are serialized.

Wyoming has no authentication: servers bind to loopback by default and API_KEYS do not apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from wyoming.error import Error as WyomingError
from wyoming.event import Event
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from services.common import logs
from services.common.config import CommonConfig
from services.common.errors import CodedError
from services.common.server import is_loopback
from services.common.validate import InputError, parse_json

MAX_LINE_BYTES = 64 * 1024  # one header line (the StreamReader limit the servers are started with)
MAX_DATA_BYTES = 64 * 1024  # the JSON `data` block that may follow it
_ids = itertools.count(1)


class WyomingInputError(CodedError):
    """Bad input on a Wyoming connection; `resync` False when the byte stream cannot be trusted on."""

    def __init__(self, code: str, message: str, resync: bool = True) -> None:
        super().__init__(code, message, fatal=not resync)


async def read_event(reader: asyncio.StreamReader, max_payload: int) -> Event | None:
    """One Wyoming event (header line, optional data, optional payload), bounded; None at EOF."""
    try:
        line = await reader.readline()
    except ValueError:  # longer than the reader's limit: the stream is out of step
        raise WyomingInputError("too_large", f"event header over {MAX_LINE_BYTES} bytes", resync=False) from None
    if not line:
        return None
    header = _json_object(line, "event header")
    kind = header.get("type")
    if not isinstance(kind, str) or not kind:
        raise WyomingInputError("missing_type", "every event needs a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise WyomingInputError("bad_event", "'data' must be an object")
    data_length = _length(header, "data_length", MAX_DATA_BYTES)
    payload_length = _length(header, "payload_length", max_payload)
    if data_length:
        data = {**data, **_json_object(await reader.readexactly(data_length), "event data")}
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=kind, data=data, payload=payload)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = parse_json(raw)
    except InputError as exc:
        raise WyomingInputError("bad_json", f"{what}: {exc.message}") from None
    if not isinstance(value, dict):
        raise WyomingInputError("bad_json", f"{what} must be a JSON object")
    return value


def _length(header: dict[str, Any], name: str, limit: int) -> int:
    value = header.get(name) or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WyomingInputError("bad_event", f"{name} must be a non-negative integer", resync=False)
    if value > limit:
        raise WyomingInputError("too_large", f"{name} {value} is over the limit of {limit} bytes", resync=False)
    return value


class GuardedHandler(AsyncEventHandler):
    """The package's handler with bounded reads, an idle timeout and errors that keep it going.
    Subclasses implement `handle_event` (raise CodedError for bad input) and may override
    `disconnect` (always called last)."""

    def __init__(self, reader, writer, common: CommonConfig, *, logger: logging.Logger, prefix: str = "wy") -> None:
        super().__init__(reader, writer)
        # the service's own frame and idle limits, so Wyoming is bounded exactly as its WebSockets are
        self.max_payload = common.max_frame_bytes
        self.idle_timeout_s = common.idle_timeout_s
        self.log = logger
        self.id = f"{prefix}_{next(_ids)}"
        self._write_lock = asyncio.Lock()

    async def write_event(self, event: Event) -> None:
        async with self._write_lock:
            await super().write_event(event)

    async def send_error(self, error: CodedError) -> None:
        logs.event(self.log, "client error", logging.INFO, connection=self.id, code=error.code)
        with contextlib.suppress(Exception):
            await self.write_event(WyomingError(text=error.message, code=error.code).event())

    async def on_idle(self) -> bool:
        """No event for `idle_timeout_s`: True keeps reading; the default says why and closes."""
        message = f"no event for {self.idle_timeout_s:g} s; closing"
        await self.send_error(InputError("idle_timeout", message, fatal=True))
        return False

    async def run(self) -> None:
        idle = self.idle_timeout_s
        logs.event(self.log, "wyoming connection open", connection=self.id)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(read_event(self.reader, self.max_payload), idle)
                except asyncio.TimeoutError:
                    if await self.on_idle():
                        continue
                    return
                except WyomingInputError as exc:
                    await self.send_error(exc)
                    if exc.fatal:
                        return
                    continue
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if event is None:
                    return
                try:
                    await self.handle_event(event)
                except CodedError as exc:
                    await self.send_error(exc)
                    if exc.fatal:
                        return
                except (ConnectionError, asyncio.IncompleteReadError):
                    return
                except Exception as exc:  # a bug: its message may hold client data, so the type only
                    logs.event(
                        self.log, "unexpected error", logging.ERROR, connection=self.id, error=type(exc).__name__
                    )
                    await self.send_error(CodedError("internal", "internal error; the event was not processed"))
        finally:
            with contextlib.suppress(Exception):
                await self.disconnect()
            self.writer.close()
            logs.event(self.log, "wyoming connection closed", connection=self.id)


class Listener:
    """One Wyoming TCP listener (ASR or TTS): started beside the HTTP server, loud when it is
    reachable beyond loopback, since Wyoming has no authentication."""

    def __init__(self, handler_factory, log: logging.Logger) -> None:
        self._handler_factory = handler_factory  # (reader, writer) -> AsyncEventHandler
        self._log = log
        self.server = None

    async def start(self, host: str, port: int) -> None:
        self.server = AsyncTcpServer(host, port)
        await self.server.start(self._handler_factory)
        logs.event(self._log, "wyoming server listening", host=host, port=port)
        if not is_loopback(host):
            logs.event(
                self._log,
                "Wyoming listens beyond loopback: it has no authentication (API_KEYS do not apply)",
                logging.WARNING,
                host=host,
            )

    async def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop()
