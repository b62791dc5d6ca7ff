"""One `/v1/tts/stream` WebSocket session (protocol in docs/tts.md): a thin adapter over the
transport-free core (core.py) on the shared receive loop (services/common/ws_endpoint.py).

Client JSON messages become the core's typed inputs; the core's outputs go out as JSON text
frames, each `audio_chunk` followed by exactly one binary frame with its audio. A refused message
becomes an `error` event and the session goes on. What is protocol here, and only here: the
message names and their fields, base64 for `register_voice`, the idle rule (a silent client is
closed with 1000 "idle timeout" once nothing it asked for is still running) and the close codes.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common.errors import CodedError
from services.common.protocol.base import Message, ProtocolError, check_fields
from services.common.protocol.tts import CLIENT_FIELDS, AudioChunk
from services.common.ws_endpoint import WebSocketEndpoint

from . import core, metrics
from .runtime import TTSRuntime

log = logging.getLogger("voice.tts.session")

KNOBS = ("exaggeration", "emotion", "cfg_weight", "temperature", "seed", "chunk_size")


class _WebSocketOutput:
    """The core's output as frames. A socket that is gone drops what it gets: the receive loop
    sees the disconnect and closes the core."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.gone = False

    async def event(self, message: Message) -> None:
        if not self.gone:
            try:
                await self.ws.send_text(message.to_json())
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.gone = True

    async def audio(self, chunk: AudioChunk, data: bytes) -> None:
        if not self.gone:
            try:
                await self.ws.send_text(chunk.to_json())
                await self.ws.send_bytes(data)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.gone = True


class TTSSession(WebSocketEndpoint):
    def __init__(self, ws: WebSocket, runtime: TTSRuntime) -> None:
        common = runtime.config.common
        super().__init__(ws, max_frame_bytes=common.max_frame_bytes, idle_timeout_s=common.idle_timeout_s, logger=log)
        self.core = core.TTSCore(runtime, _WebSocketOutput(ws))
        self.session_id = self.core.session_id

    async def run(self) -> None:
        await self.ws.accept()
        metrics.ACTIVE_STREAMS.inc()
        try:
            await super().run()
        finally:
            metrics.ACTIVE_STREAMS.dec()

    async def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        await super().close(code, reason)

    # ------------------------------------------------------------------ the base's hooks
    async def on_connect(self) -> None:
        await self.core.open()

    async def on_disconnect(self, code: int | None) -> None:
        await self.core.close()

    async def on_idle(self) -> bool:
        if self.core.busy:
            return True  # a long synthesis is not idleness
        await self.close(1000, "idle timeout")
        return False

    async def send_error(self, error: CodedError) -> None:
        await self.core.report(error)

    def too_large(self, size: int, binary: bool) -> CodedError:
        if binary:
            return ProtocolError("unexpected_binary", "this stream takes JSON text messages only")
        return ProtocolError("frame_too_large", f"message larger than {self.max_frame_bytes} bytes")

    async def on_bytes(self, data: bytes) -> None:
        raise ProtocolError("unexpected_binary", "this stream takes JSON text messages only")

    async def on_json(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind not in CLIENT_FIELDS:
            raise ProtocolError("unknown_type", f"unknown message type {kind!r}")
        check_fields(data, CLIENT_FIELDS[kind], kind)
        await self.core.handle(_input(kind, data))


def _input(kind: str, data: dict[str, Any]) -> core.Input:
    """A checked client message → the core's input (values as given: the core validates them)."""
    rid = data.get("request_id")
    if kind == "config":
        return core.Configure({k: v for k, v in data.items() if k != "type"})
    if kind == "synthesize":
        options = {k: data[k] for k in KNOBS if k in data}
        return core.Synthesize(data.get("text"), rid, data.get("voice_id"), data.get("streaming", True), options)
    if kind == "text":
        return core.Text(data.get("text"), rid, data.get("voice_id"))
    if kind == "flush":
        return core.Flush(rid)
    if kind == "end":
        return core.End(rid)
    if kind == "cancel":
        return core.Cancel(rid)
    return _register_voice(data)


def _register_voice(data: dict[str, Any]) -> core.RegisterVoice:
    voice_id = data.get("voice_id")
    if not isinstance(voice_id, str) or not voice_id:
        raise ProtocolError("bad_voice_id", "register_voice needs a voice_id string")
    encoded = data.get("reference_audio")
    if not isinstance(encoded, str) or not encoded:
        raise ProtocolError("invalid_base64", "reference_audio must be a base64 string")
    try:
        audio = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_base64", "reference_audio is not valid base64") from None
    return core.RegisterVoice(voice_id, audio, data.get("name"))
