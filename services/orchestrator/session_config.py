"""The client's per-session choices (the agent stream's audio_start payload, Twilio's call
parameters), validated once, and the ASR stream config they imply."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.common.audio import AudioFormatError, validate_sample_rate
from services.common.protocol import asr
from services.common.protocol.base import ProtocolError, check_fields

from .config import OrchestratorConfig

INPUT_SAMPLE_RATE = 16000  # the user's audio as the session takes it (float32 mono)
SESSION_FIELDS = {"mode", "voice", "sample_rate", "language", "ack", "partials", "turn_detection", "system_prompt"}
MAX_PROMPT_CHARS = 8000


class Mode(StrEnum):
    """What a turn does with the user's final transcript (a StrEnum: it goes on the wire as is)."""

    AGENT = "agent"  # ASR → Claude → TTS
    DIRECT = "direct"  # ASR → TTS: the user's words spoken back


MODES = tuple(m.value for m in Mode)


@dataclass
class SessionConfig:
    """The client's per-session choices (the audio_start JSON payload; all optional)."""

    mode: Mode = Mode.AGENT
    voice: str | None = None  # TTS voice id; None = the server's DEFAULT_VOICE / the engine's default
    sample_rate: int = 24000  # rate of the agent audio handed to the transport
    language: str | None = None  # ASR language hint
    ack: bool | None = None  # fast acknowledgment; None = the server's ACK_ENABLED
    partials: bool = True  # forward ASR partial transcripts
    turn_detection: dict[str, Any] | None = None  # passed to the ASR as-is (see docs/asr.md)
    system_prompt: str | None = None  # overrides SYSTEM_PROMPT for this session


def parse_session_config(data: Any, settings: OrchestratorConfig) -> SessionConfig:
    """audio_start payload → SessionConfig; ProtocolError("bad_config", ...) names the bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError("bad_config", "the audio_start payload must be a JSON object")
    check_fields(data, SESSION_FIELDS, "session config")
    cfg = SessionConfig(voice=settings.default_voice, sample_rate=settings.output_sample_rate)
    mode = data.get("mode", cfg.mode)
    if mode not in MODES:
        raise ProtocolError("bad_config", f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    cfg.mode = Mode(mode)
    voice = data.get("voice", cfg.voice)
    if voice is not None and (not isinstance(voice, str) or not voice or len(voice) > 128):
        raise ProtocolError("bad_config", "voice must be a voice id string or null")
    cfg.voice = voice
    try:
        cfg.sample_rate = validate_sample_rate(data.get("sample_rate", cfg.sample_rate))
    except AudioFormatError as exc:
        raise ProtocolError("bad_config", f"sample_rate: {exc.message}") from None
    for name in ("ack", "partials"):
        value = data.get(name, getattr(cfg, name))
        if value is not None and not isinstance(value, bool):
            raise ProtocolError("bad_config", f"{name} must be true or false")
        setattr(cfg, name, value)
    prompt = data.get("system_prompt")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS):
        raise ProtocolError("bad_config", f"system_prompt must be a string of at most {MAX_PROMPT_CHARS} chars")
    cfg.system_prompt = prompt
    cfg.language = data.get("language")
    cfg.turn_detection = data.get("turn_detection")
    # the ASR's own validator checks language and turn_detection, so the two never disagree
    asr.parse_config(asr_config(cfg))
    return cfg


def asr_config(cfg: SessionConfig) -> dict[str, Any]:
    """The ASR stream config; turn detection left out = the ASR service's own defaults."""
    out: dict[str, Any] = {
        "sample_rate": INPUT_SAMPLE_RATE,
        "encoding": "pcm_s16le",
        "language": cfg.language,
        "partials": cfg.partials,
    }
    if cfg.turn_detection is not None:
        out["turn_detection"] = cfg.turn_detection
    return out
