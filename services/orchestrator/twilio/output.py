"""The agent's side of a phone call, in Twilio Media Streams messages (AgentOutput for Twilio).

Agent audio leaves as `media` messages of exactly 20 ms (160 bytes of base64 μ-law at 8 kHz),
each chunk followed by a `mark` named after the session's segment id. Twilio plays what it gets
in order and echoes a mark once the audio before it has been played, which is the only honest
signal of what the caller heard: the echoed mark becomes `AgentSession.playback_reached`.

Barge-in sends `clear`: Twilio drops its unplayed audio and echoes every mark still queued. Those
echoes are for audio nobody heard, so marks pending at the moment of a clear are remembered and
ignored when they come back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import OrderedDict
from typing import Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common import logs
from services.common.audio import encode, resample

from .. import session as agent_session

log = logging.getLogger("voice.orchestrator.twilio")

SAMPLE_RATE = 8000
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
MULAW_SILENCE = b"\xff"


class TwilioOutput:
    """AgentOutput over a Twilio media stream. Sends are serialized (the ASR and TTS readers and
    the turn task all produce output) and stop quietly once the call is gone."""

    def __init__(self, ws: WebSocket, call_id: str) -> None:
        self.ws = ws
        self.call_id = call_id
        self.stream_sid: str | None = None
        self.session: agent_session.AgentSession | None = None
        self.gone = False
        self._lock = asyncio.Lock()
        self._carry = b""  # μ-law bytes short of a whole frame, sent with the next chunk
        self._pending_marks: OrderedDict[str, str] = OrderedDict()  # mark name → segment id
        self._cleared_marks: set[str] = set()
        self.frames_sent = 0
        self.marks_sent = 0
        self.clears_sent = 0

    # ------------------------------------------------------------------ Twilio side
    async def _send(self, message: dict[str, Any]) -> None:
        if self.gone or self.stream_sid is None:
            return
        try:
            await self.ws.send_text(json.dumps(message, separators=(",", ":")))
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.gone = True

    async def _send_frames(self, mulaw: bytes) -> None:
        for start in range(0, len(mulaw), FRAME_BYTES):
            payload = base64.b64encode(mulaw[start : start + FRAME_BYTES]).decode("ascii")
            await self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})
            self.frames_sent += 1

    async def _send_mark(self, name: str, segment_id: str) -> None:
        self._pending_marks[name] = segment_id
        await self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
        self.marks_sent += 1

    def mark_echoed(self, name: str) -> None:
        """Twilio played everything up to this mark (or cleared it: then it is ignored)."""
        if name in self._cleared_marks:
            self._cleared_marks.discard(name)
            return
        segment_id = self._pending_marks.get(name)
        if segment_id is None:
            return
        while self._pending_marks:  # marks come back in order; anything older was played too
            older, _ = self._pending_marks.popitem(last=False)
            if older == name:
                break
        if self.session is not None:
            self.session.playback_reached(segment_id)

    # ------------------------------------------------------------------ AgentOutput
    async def ready(self, info: dict[str, Any]) -> None:
        logs.event(log, "twilio call live", call_id=self.call_id, session_id=info.get("session_id"))

    async def transcription(self, text: str, final: bool) -> None:
        if final:
            logs.event(log, "caller said", call_id=self.call_id, text=logs.content(text))

    async def llm_chunk(self, text: str, needs_followup: bool = False) -> None:
        return None

    async def audio(self, pcm: np.ndarray, sample_rate: int, segment_id: str) -> None:
        if sample_rate != SAMPLE_RATE:
            pcm = resample(pcm, sample_rate, SAMPLE_RATE)
        async with self._lock:
            data = self._carry + encode(pcm, "mulaw")
            whole = len(data) - len(data) % FRAME_BYTES
            self._carry = data[whole:]
            await self._send_frames(data[:whole])
            # the mark follows this segment's whole frames; its last <20 ms rides with the next chunk
            await self._send_mark(segment_id, segment_id)

    async def clear(self) -> None:
        async with self._lock:
            self._carry = b""
            self._cleared_marks.update(self._pending_marks)
            self._pending_marks.clear()
            await self._send({"event": "clear", "streamSid": self.stream_sid})
            self.clears_sent += 1

    async def event(self, name: str, **data: Any) -> None:
        if name == "interrupted":
            logs.event(log, "caller barged in", call_id=self.call_id, heard_chars=data.get("heard_chars"))

    async def done(self, waterfall: dict[str, Any]) -> None:
        """End of a turn: the tail shorter than a frame goes out padded with silence, then a mark
        for the last segment so the caller's playback of the whole answer is confirmed."""
        async with self._lock:
            if self._carry:
                tail = self._carry + MULAW_SILENCE * (FRAME_BYTES - len(self._carry))
                self._carry = b""
                await self._send_frames(tail)
                last = next(reversed(self._pending_marks.values()), None)
                if last is not None:
                    await self._send_mark(f"{last}~end", last)

    async def error(self, code: str, message: str, fatal: bool = False) -> None:
        logs.event(log, "agent error on call", level=logging.WARNING, call_id=self.call_id, code=code, fatal=fatal)
