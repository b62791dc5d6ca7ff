"""The browser transport: `/v1/agent/stream`, binary frames `[type u8][flags u8][payload]`
(services/common/protocol/agent.py; docs/orchestrator.md). One WebSocket = one AgentSession.

Client → server: 0x01 audio_start (optional JSON session config), 0x02 audio_chunk (PCM s16le
16 kHz mono), 0x03 audio_end, 0x0A event {"event": "user_text", "text": ...}. Anything else, or a
malformed frame, gets a 0x07 error and the session goes on.

The page does not report playback, so audio counts as played when a real-time playback clock says
it has (playback.py): sent audio plays back to back from when it is sent, and until the last of it
has played the agent is still speaking, so the user's speech barges in even after the turn's `done`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common import logs, validate
from services.common.audio import encode, int16_to_float, resample
from services.common.errors import CodedError
from services.common.limits import admit
from services.common.protocol.agent import FLAG_FINAL, FLAG_NEEDS_FOLLOWUP, Frame, FrameType, pack, unpack
from services.common.protocol.base import ProtocolError
from services.common.ws_endpoint import WebSocketEndpoint

from .playback import PlaybackTracker
from .runtime import Runtime
from .session import AgentSession
from .transports import Transport

log = logging.getLogger("voice.orchestrator.ws")

CLIENT_TYPES = {FrameType.AUDIO_START, FrameType.AUDIO_CHUNK, FrameType.AUDIO_END, FrameType.EVENT}
MAX_USER_TEXT = 4000


class WebSocketOutput:
    """AgentOutput over the binary frames. Sends are serialized: the ASR and TTS readers and the
    turn task all talk to the client, and frames must not interleave."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.session: AgentSession | None = None
        self.sample_rate = 24000
        self.gone = False
        self._lock = asyncio.Lock()
        self.playback = PlaybackTracker(self._played)

    def _played(self, segment_id: str) -> None:
        if self.session is not None:
            self.session.playback_reached(segment_id)

    async def send(self, frame_type: FrameType, payload: Any = None, flags: int = 0) -> None:
        if self.gone:
            return
        data = pack(frame_type, payload, flags)
        async with self._lock:
            try:
                await self.ws.send_bytes(data)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.gone = True  # the receive loop sees the disconnect and closes the session

    async def ready(self, info: dict[str, Any]) -> None:
        self.sample_rate = int(info.get("sample_rate", self.sample_rate))
        await self.send(FrameType.READY, info)

    async def transcription(self, text: str, final: bool) -> None:
        await self.send(FrameType.TRANSCRIPTION, text, FLAG_FINAL if final else 0)

    async def llm_chunk(self, text: str, needs_followup: bool = False) -> None:
        await self.send(FrameType.LLM_CHUNK, text, FLAG_NEEDS_FOLLOWUP if needs_followup else 0)

    async def audio(self, pcm: np.ndarray, sample_rate: int, segment_id: str) -> None:
        duration_s = len(pcm) / sample_rate
        if sample_rate != self.sample_rate:
            pcm = resample(pcm, sample_rate, self.sample_rate)
        epoch = self.playback.epoch  # a clear queued behind this send drops this audio too
        await self.send(FrameType.TTS_AUDIO, encode(pcm, "pcm_s16le"))
        self.playback.sent(segment_id, duration_s, epoch)  # played once its expected end has passed

    async def clear(self) -> None:
        self.playback.clear()  # the page drops its queue: nothing queued will ever play
        await self.send(FrameType.CLEAR)

    def close(self) -> None:
        self.playback.close()

    async def event(self, name: str, **data: Any) -> None:
        await self.send(FrameType.EVENT, {"event": name, **data})

    async def done(self, waterfall: dict[str, Any]) -> None:
        await self.send(FrameType.DONE, waterfall)

    async def error(self, code: str, message: str, fatal: bool = False) -> None:
        await self.send(FrameType.ERROR, {"code": code, "message": message, "fatal": fatal})


async def agent_stream(ws: WebSocket) -> None:
    runtime: Runtime = ws.app.state.runtime

    async def serve() -> None:
        await ws.accept()
        await _serve(ws, runtime)

    await admit(ws, runtime.limiter, serve, "server shutting down" if runtime.registry.closing else None)


async def _serve(ws: WebSocket, runtime: Runtime) -> None:
    output = WebSocketOutput(ws)
    conn = _Connection(ws, runtime, output)
    key = f"ws-{id(conn)}"
    runtime.registry.add(key, conn.shutdown)
    try:
        await conn.run()
    finally:
        runtime.registry.remove(key)
        output.close()
        await conn.close_session()


class _Connection(WebSocketEndpoint):
    """The receive side: the shared loop (services/common/ws_endpoint.py) with this protocol's
    frames and its error shape, a 0x07 frame {code, message, fatal}."""

    def __init__(self, ws: WebSocket, runtime: Runtime, output: WebSocketOutput) -> None:
        common = runtime.config.common
        super().__init__(ws, max_frame_bytes=common.max_frame_bytes, idle_timeout_s=common.idle_timeout_s, logger=log)
        self.runtime = runtime
        self.output = output
        self.session: AgentSession | None = None

    # ------------------------------------------------------------------ the base's hooks
    async def send_error(self, error: CodedError) -> None:
        await self.output.error(error.code, error.message, error.fatal)

    def parse_text(self, text: str) -> dict[str, Any]:
        raise ProtocolError("bad_frame", "frames must be binary: [type u8][flags u8][payload]")

    def too_large(self, size: int, binary: bool) -> CodedError:
        return ProtocolError("frame_too_large", f"frame of {size} bytes exceeds {self.max_frame_bytes}")

    async def on_idle(self) -> bool:
        await self.output.error("idle_timeout", f"nothing received for {self.idle_timeout_s:.0f} s", True)
        await self.close(1000, "idle timeout")
        return False

    async def on_bytes(self, data: bytes) -> None:
        await self._dispatch(unpack(data))

    # ------------------------------------------------------------------ frames
    async def _dispatch(self, frame: Frame) -> None:
        if frame.type not in CLIENT_TYPES:
            raise ProtocolError("wrong_direction", f"frame type 0x{frame.type:02x} is sent by the server only")
        if frame.type == FrameType.AUDIO_START:
            await self._start(frame)
            return
        if self.session is None:
            raise ProtocolError("not_started", "send audio_start (0x01) before audio, audio_end or events")
        if frame.type == FrameType.AUDIO_CHUNK:
            if len(frame.payload) % 2:
                raise ProtocolError("bad_audio", "audio_chunk payload must be PCM s16le (an even number of bytes)")
            if frame.payload:
                await self.session.push_audio(int16_to_float(np.frombuffer(frame.payload, dtype="<i2")))
        elif frame.type == FrameType.AUDIO_END:
            await self.session.end_of_audio()
        elif frame.type == FrameType.EVENT:
            event = _json_payload(frame)
            if not isinstance(event, dict) or event.get("event") != "user_text":
                raise ProtocolError("unknown_event", 'client events: {"event": "user_text", "text": "..."}')
            text = event.get("text")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_USER_TEXT:
                raise ProtocolError("bad_text", f"user_text needs a non-empty text of at most {MAX_USER_TEXT} chars")
            await self.session.user_text(validate.text(text, "user_text"))

    async def _start(self, frame: Frame) -> None:
        if self.session is not None:
            raise ProtocolError("already_started", "audio_start was already sent on this connection")
        config = _json_payload(frame)
        session = self.runtime.new_session(self.output, config)  # ProtocolError on a bad config
        self.output.session = session
        self.session = session
        self.session_id = session.session_id
        logs.event(log, "agent session open", session_id=session.session_id, mode=session.config.mode)
        await session.start()

    async def close_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    async def shutdown(self) -> None:
        await self.output.error("shutting_down", "the server is shutting down", True)
        await self.close(1001, "server shutting down")
        await self.close_session()


TRANSPORT = Transport("websocket", lambda: [WebSocketRoute("/v1/agent/stream", agent_stream)])


def _json_payload(frame: Frame) -> Any:
    """A frame's JSON payload through the one guarded parser (bounded nesting, valid Unicode)."""
    if not frame.payload:
        return None
    try:
        return validate.parse_json(frame.payload)
    except validate.InputError as exc:
        if exc.code != "bad_json":
            raise ProtocolError(exc.code, f"frame 0x{frame.type:02x}: {exc.message}") from None
        why = "payload is not valid UTF-8 JSON" if exc.message in _PLAIN_BAD_JSON else exc.message
        raise ProtocolError("bad_json", f"frame 0x{frame.type:02x}: {why}") from None


_PLAIN_BAD_JSON = ("not valid JSON", "JSON must be UTF-8 text")  # syntax errors read as they always did
