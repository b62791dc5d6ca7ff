"""TTS stream protocol (`/v1/tts/stream`). Each `audio_chunk` event is followed by exactly one
binary frame holding that chunk's audio in the session's encoding and sample rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Error, Message, event_class

OUTPUT_ENCODINGS = ("pcm_f32le", "pcm_s16le", "mulaw")
DEFAULT_SAMPLE_RATE = 24000


# ---------------------------------------------------------------- client → server
@dataclass
class SessionConfig:
    voice_id: str | None = None
    sample_rate: int = DEFAULT_SAMPLE_RATE
    encoding: str = "pcm_f32le"
    exaggeration: float = 0.5
    cfg_weight: float = 0.5
    temperature: float = 0.8
    seed: int | None = None


CLIENT_FIELDS: dict[str, set[str]] = {
    "config": {"voice_id", "sample_rate", "encoding", "exaggeration", "cfg_weight", "temperature", "seed"},
    "synthesize": {
        "request_id",
        "text",
        "voice_id",
        "streaming",
        "chunk_size",
        "emotion",
        "exaggeration",
        "cfg_weight",
        "temperature",
        "seed",
    },
    "text": {"request_id", "text", "voice_id"},
    "flush": {"request_id"},
    "end": {"request_id"},
    "cancel": {"request_id"},
    "register_voice": {"voice_id", "reference_audio", "name"},
}


# ---------------------------------------------------------------- server → client
@dataclass
class Ready(Message):
    type: ClassVar[str] = "ready"
    session_id: str
    sample_rate: int
    encoding: str
    engine: str = ""
    model: str = ""  # what the engine speaks with, e.g. "piper:en_US-joe-medium"


@dataclass
class AudioChunk(Message):
    type: ClassVar[str] = "audio_chunk"
    request_id: str
    chunk_id: int
    duration_ms: float
    sample_rate: int
    session_id: str = ""
    encoding: str = "pcm_f32le"


@dataclass
class SynthesisComplete(Message):
    type: ClassVar[str] = "synthesis_complete"
    request_id: str
    total_duration_ms: float
    chunks_sent: int
    first_audio_ms: float | None
    session_id: str = ""


@dataclass
class Cancelled(Message):
    type: ClassVar[str] = "cancelled"
    request_id: str
    session_id: str = ""


@dataclass
class VoiceRegistered(Message):
    type: ClassVar[str] = "voice_registered"
    voice_id: str
    session_id: str = ""


SERVER_EVENTS: dict[str, type[Message]] = {
    cls.type: cls for cls in (Ready, AudioChunk, SynthesisComplete, Cancelled, VoiceRegistered, Error)
}


def parse_server_event(data: dict[str, Any]) -> Message:
    return event_class(SERVER_EVENTS, data, "TTS").from_dict(data)
