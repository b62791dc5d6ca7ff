"""OpenAI Realtime transcription session objects ↔ the core's `Configure`.

The session object is kept in OpenAI's shape (what `session.created` / `session.updated` echo)
and merged field by field, as OpenAI does: only the fields present in a `session.update` change.
The mapping onto our turn taking:

- `turn_detection: {"type": "server_vad", threshold, prefix_padding_ms, silence_duration_ms}`
  → Silero VAD (mode `vad`): the VAD threshold, the pre-speech pad, `stop_secs`.
- `turn_detection: {"type": "semantic_vad", eagerness}` → Smart Turn (mode `smart_turn`):
  eagerness sets the completeness threshold and the longest pause (OpenAI: 8 / 4 / 2 s).
- `turn_detection: null` → mode `none`: only `input_audio_buffer.commit` ends a turn.
- `audio.input.format`: `audio/pcm` (24 kHz, s16le), `audio/pcmu` (μ-law 8 kHz), `audio/pcma`
  (A-law 8 kHz). `noise_reduction` and `include` are accepted and echoed, not applied.
"""

from __future__ import annotations

import copy
from typing import Any

from services.common import validate
from services.common.errors import CodedError
from services.common.protocol.asr import StreamConfig, TurnDetection
from services.common.validate import InputError

from ..core import Configure

PCM_RATE = 24000
FORMATS = {"audio/pcm": ("pcm_s16le", PCM_RATE), "audio/pcmu": ("mulaw", 8000), "audio/pcma": ("alaw", 8000)}
# eagerness → (Smart Turn completeness threshold, longest pause before finalizing anyway)
EAGERNESS = {"low": (0.75, 8.0), "medium": (0.5, 4.0), "auto": (0.5, 4.0), "high": (0.3, 2.0)}
SERVER_VAD_DEFAULTS = {"threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
SESSION_FIELDS = {"type", "audio", "include", "id", "object", "expires_at", "client_secret"}
INPUT_FIELDS = {"format", "transcription", "turn_detection", "noise_reduction"}
TRANSCRIPTION_FIELDS = {"model", "language", "prompt", "delay", "keywords", "languages"}
VAD_FIELDS = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response", "interrupt_response",
              "idle_timeout_ms", "eagerness"}  # fmt: skip
MAX_PROMPT_CHARS = 1000


class RealtimeError(CodedError):
    """A client event OpenAI's way: `invalid_request_error`, a code, and the `param` at fault."""

    def __init__(self, code: str, message: str, param: str | None = None, **kwargs: Any) -> None:
        super().__init__(code, message, **kwargs)
        self.param = param


def default_session(session_id: str, model_name: str) -> dict[str, Any]:
    return {
        "type": "transcription",
        "id": session_id,
        "object": "realtime.transcription_session",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": PCM_RATE},
                "transcription": {"model": model_name, "language": None, "prompt": ""},
                "turn_detection": {"type": "server_vad", **SERVER_VAD_DEFAULTS},
                "noise_reduction": None,
            }
        },
        "include": [],
    }


def merged(session: dict[str, Any], update: Any) -> dict[str, Any]:
    """The session after `update` (a `session.update`'s `session`), validated; RealtimeError else."""
    if not isinstance(update, dict):
        raise RealtimeError("invalid_type", "session must be an object", "session")
    _known(update, SESSION_FIELDS, "session")
    if update.get("type", "transcription") != "transcription":
        raise RealtimeError(
            "invalid_value", "this endpoint serves transcription sessions: session.type must be 'transcription'",
            "session.type",
        )  # fmt: skip
    new = copy.deepcopy(session)
    if "include" in update:
        include = update["include"]
        if include is not None and (not isinstance(include, list) or not all(isinstance(i, str) for i in include)):
            raise RealtimeError("invalid_type", "include must be a list of strings", "session.include")
        new["include"] = list(include or [])
    audio = update.get("audio")
    if audio is None:
        return new
    if not isinstance(audio, dict):
        raise RealtimeError("invalid_type", "audio must be an object", "session.audio")
    _known(audio, {"input"}, "session.audio")
    given = audio.get("input")
    if given is None:
        return new
    if not isinstance(given, dict):
        raise RealtimeError("invalid_type", "audio.input must be an object", "session.audio.input")
    _known(given, INPUT_FIELDS, "session.audio.input")
    target = new["audio"]["input"]
    if "format" in given:
        target["format"] = _format(given["format"])
    if "transcription" in given:
        target["transcription"] = _transcription(given["transcription"], target["transcription"])
    if "turn_detection" in given:
        target["turn_detection"] = _turn_detection(given["turn_detection"])
    if "noise_reduction" in given:
        target["noise_reduction"] = _noise_reduction(given["noise_reduction"])
    return new


def to_configure(session: dict[str, Any]) -> Configure:
    """The core's settings for an (already validated) session object."""
    audio_in = session["audio"]["input"]
    encoding, rate = FORMATS[audio_in["format"]["type"]]
    td = audio_in["turn_detection"]
    transcription = audio_in["transcription"] or {}
    vad_threshold = pad = None
    if td is None:
        detection = TurnDetection(mode="none")
    elif td["type"] == "server_vad":
        detection = TurnDetection(mode="vad", stop_secs=td["silence_duration_ms"] / 1000.0)
        vad_threshold, pad = td["threshold"], td["prefix_padding_ms"] / 1000.0
    else:
        threshold, max_silence = EAGERNESS[td.get("eagerness") or "auto"]
        detection = TurnDetection(mode="smart_turn", threshold=threshold, max_silence_secs=max_silence)
    stream = StreamConfig(
        sample_rate=rate,
        encoding=encoding,
        language=transcription.get("language") or None,
        partials=True,
        word_timestamps=False,
        turn_detection=detection,
    )
    return Configure(
        stream, vad_threshold=vad_threshold, pre_speech_pad_s=pad, prompt=transcription.get("prompt") or None
    )


def _known(data: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise RealtimeError("unknown_parameter", f"Unknown parameter: '{where}.{key}'.", f"{where}.{key}")


def _format(value: Any) -> dict[str, Any]:
    param = "session.audio.input.format"
    if not isinstance(value, dict) or value.get("type") not in FORMATS:
        raise RealtimeError(
            "invalid_value", f"format.type must be one of {', '.join(FORMATS)}", param + ".type"
        )  # fmt: skip
    _known(value, {"type", "rate"}, param)
    if value["type"] == "audio/pcm":
        rate = value.get("rate", PCM_RATE)
        if rate != PCM_RATE or isinstance(rate, bool):
            raise RealtimeError("invalid_value", "audio/pcm is 24000 Hz mono 16-bit little-endian", param + ".rate")
        return {"type": "audio/pcm", "rate": PCM_RATE}
    return {"type": value["type"]}


def _transcription(value: Any, current: dict[str, Any] | None) -> dict[str, Any] | None:
    param = "session.audio.input.transcription"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RealtimeError("invalid_type", "transcription must be an object or null", param)
    _known(value, TRANSCRIPTION_FIELDS, param)
    new = dict(current or {})
    if "model" in value:
        if not isinstance(value["model"], str):
            raise RealtimeError("invalid_type", "transcription.model must be a string", param + ".model")
        new["model"] = value["model"]  # echoed; the process serves its one model (ASR_MODEL)
    if "language" in value:
        try:
            new["language"] = validate.language(value["language"])
        except InputError:
            message = "language must be an ISO-639-1 code like 'en'"
            raise RealtimeError("invalid_value", message, param + ".language") from None
    if "prompt" in value:
        prompt = value["prompt"]
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS):
            raise RealtimeError(
                "invalid_value", f"prompt must be a string of at most {MAX_PROMPT_CHARS} characters", param + ".prompt"
            )  # fmt: skip
        new["prompt"] = prompt or ""
    for name in ("delay", "keywords", "languages"):
        if name in value:
            new[name] = value[name]  # accepted and echoed; not used by Whisper
    return new


def _turn_detection(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RealtimeError("invalid_type", "turn_detection must be an object or null", param)
    _known(value, VAD_FIELDS, param)
    kind = value.get("type")
    if kind == "server_vad":
        out: dict[str, Any] = {"type": kind}
        for name, lo, hi in (
            ("threshold", 0.0, 1.0),
            ("prefix_padding_ms", 0, 5000),
            ("silence_duration_ms", 0, 10000),
        ):
            number = value.get(name, SERVER_VAD_DEFAULTS[name])
            if isinstance(number, bool) or not isinstance(number, int | float) or not lo <= number <= hi:
                raise RealtimeError("invalid_value", f"{name} must be a number from {lo} to {hi}", f"{param}.{name}")
            out[name] = number
        return out
    if kind == "semantic_vad":
        eagerness = value.get("eagerness", "auto")
        if eagerness not in EAGERNESS:
            raise RealtimeError(
                "invalid_value", f"eagerness must be one of {', '.join(EAGERNESS)}", param + ".eagerness"
            )  # fmt: skip
        return {"type": kind, "eagerness": eagerness}
    raise RealtimeError(
        "invalid_value", "turn_detection.type must be 'server_vad', 'semantic_vad' or null", param + ".type"
    )


def _noise_reduction(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.noise_reduction"
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("near_field", "far_field"):
        raise RealtimeError("invalid_value", "noise_reduction.type must be 'near_field' or 'far_field'", param)
    return {"type": value["type"]}  # accepted and echoed; the audio is not filtered
