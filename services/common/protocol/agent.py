"""Agent stream framing (`/v1/agent/stream`): every WebSocket message, both ways, is binary:
`[type u8][flags u8][payload]`. Flags: bit0 is_final, bit1 needs_followup."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .base import ProtocolError


class FrameType(IntEnum):
    AUDIO_START = 0x01  # client → server; payload: optional JSON session config
    AUDIO_CHUNK = 0x02  # client → server; PCM s16le 16 kHz mono
    AUDIO_END = 0x03  # client → server; ends the user's turn now
    TRANSCRIPTION = 0x04  # server → client; UTF-8; bit0 = final
    LLM_CHUNK = 0x05  # server → client; UTF-8
    TTS_AUDIO = 0x06  # server → client; PCM s16le mono at the session's output rate
    ERROR = 0x07  # server → client; UTF-8 JSON {code, message, fatal}
    READY = 0x08  # server → client; JSON
    DONE = 0x09  # server → client; JSON: the turn's latency waterfall
    EVENT = 0x0A  # server → client; JSON {"event": name, ...}
    CLEAR = 0x0B  # server → client; stop playback now


FLAG_FINAL = 0x01
FLAG_NEEDS_FOLLOWUP = 0x02


@dataclass
class Frame:
    type: FrameType
    flags: int
    payload: bytes

    @property
    def is_final(self) -> bool:
        return bool(self.flags & FLAG_FINAL)

    @property
    def needs_followup(self) -> bool:
        return bool(self.flags & FLAG_NEEDS_FOLLOWUP)

    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.payload.decode("utf-8")) if self.payload else None


def pack(frame_type: FrameType, payload: bytes | str | dict | None = None, flags: int = 0) -> bytes:
    if payload is None:
        body = b""
    elif isinstance(payload, bytes):
        body = payload
    elif isinstance(payload, str):
        body = payload.encode("utf-8")
    else:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return bytes((int(frame_type), flags & 0xFF)) + body


def unpack(data: bytes) -> Frame:
    if len(data) < 2:
        raise ProtocolError("bad_frame", "agent frames need at least 2 bytes: [type][flags]")
    try:
        frame_type = FrameType(data[0])
    except ValueError:
        raise ProtocolError("unknown_type", f"unknown frame type 0x{data[0]:02x}") from None
    return Frame(frame_type, data[1], bytes(data[2:]))


WATERFALL_STAGES = ("speech_end", "asr_final", "llm_first_token", "tts_first_audio", "first_audio_sent", "done")
