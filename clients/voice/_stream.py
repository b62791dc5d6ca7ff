"""What the ASR and TTS stream clients share: connect/reconnect with backoff, JSON sends, typed
receives, and one exception (`StreamClosed`) for every way the server can go away."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.common.errors import CodedError
from services.common.protocol.base import Error, Message, ProtocolError

from ._ws import close_ws, dumps, open_ws, stream_url
from .backoff import Backoff


class StreamClosed(ConnectionError):
    """The WebSocket is gone (server closed, dropped, or never opened). `code`/`reason` as sent."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ServerError(CodedError, RuntimeError):
    """An `error` event where the client expected something else (e.g. instead of `ready`)."""

    def __init__(self, event: Error) -> None:
        super().__init__(event.code, event.message, fatal=event.fatal)
        self.args = (f"{event.code}: {event.message}",)  # str(exc) as before: code and message
        self.event = event


class WsConnection:
    """One WebSocket to one of our services: URL, key, retries, closing, and a closed socket
    turned into StreamClosed with its code and reason. The JSON streams and the binary agent
    stream differ only in what they put on it."""

    path: ClassVar[str] = ""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        self.url = stream_url(url, self.path)
        self.api_key = api_key
        self.backoff = backoff
        self.open_timeout = open_timeout
        self.ws: ClientConnection | None = None

    async def _open(self) -> None:
        self.ws = await open_ws(self.url, self.api_key, self.backoff, self.open_timeout)

    async def close(self) -> None:
        ws, self.ws = self.ws, None
        await close_ws(ws)

    @property
    def connected(self) -> bool:
        return self.ws is not None and self.ws.close_code is None

    async def connect(self):
        raise NotImplementedError

    async def __aenter__(self):
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _send(self, data: str | bytes) -> None:
        if self.ws is None:
            raise StreamClosed(f"{self.url}: not connected")
        try:
            await self.ws.send(data)
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    async def recv_raw(self) -> str | bytes:
        if self.ws is None:
            raise StreamClosed(f"{self.url}: not connected")
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise self._closed(exc) from None

    def _closed(self, exc: ConnectionClosed) -> StreamClosed:
        rcvd = exc.rcvd
        code = rcvd.code if rcvd else None
        reason = rcvd.reason if rcvd else ""
        return StreamClosed(f"{self.url}: closed ({code} {reason})".strip(), code, reason)


class JsonEventStream(WsConnection):
    ready_timeout_s: ClassVar[float] = 15.0

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        super().__init__(url, api_key, backoff, open_timeout)
        self.ready: Message | None = None

    # ------------------------------------------------------------- lifecycle
    async def connect(self) -> Message:
        """Opens the socket (retrying per `backoff`), sends the config, waits for `ready`."""
        await self._open()
        try:
            self.ready = await asyncio.wait_for(self._handshake(), self.ready_timeout_s)
        except BaseException:
            await self.close()
            raise
        return self.ready

    async def reconnect(self) -> Message:
        await self.close()
        return await self.connect()

    # ------------------------------------------------------------- wire
    async def send_json(self, message: dict[str, Any]) -> None:
        await self._send(dumps(message))

    async def recv_json(self) -> dict[str, Any]:
        """Next JSON event; a stray binary frame here is a protocol violation by the server."""
        raw = await self.recv_raw()
        if isinstance(raw, bytes):
            raise ProtocolError("unexpected_binary", f"{self.url}: binary frame where a JSON event was expected")
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ProtocolError("bad_json", f"{self.url}: event is not a JSON object")
        return data

    async def _handshake(self) -> Message:
        raise NotImplementedError

    async def _await_ready(self, parse, ready_cls, matches) -> Message:
        """Reads until a `ready` that reflects what we asked for; an error event fails the handshake.
        Servers may send one `ready` on accept and another after `config`: the first may not match."""
        while True:
            event = parse(await self.recv_json())
            if isinstance(event, Error):
                raise ServerError(event)
            if isinstance(event, ready_cls) and matches(event):
                return event
