"""ASR stream protocol (`/v1/asr/stream`). Server events carry `session_id`; times are seconds
of stream audio (sample clock), so the same audio always gives the same timestamps."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .. import validate
from ..audio import ENCODINGS, AudioFormatError, validate_sample_rate
from .base import Error, Message, ProtocolError, check_fields, event_class

TURN_MODES = ("smart_turn", "vad", "none")
EOT_REASONS = ("smart_turn", "transcript", "silence_timeout", "flush", "end", "vad", "max_duration")


@dataclass
class TurnDetection:
    mode: str = "smart_turn"
    stop_secs: float = 0.2
    max_silence_secs: float = 3.0
    threshold: float = 0.5


@dataclass
class StreamConfig:
    """The client's optional first message; every field has a default, so `{}` is valid."""

    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    language: str | None = None
    model: str | None = None
    partials: bool = True
    word_timestamps: bool = True
    turn_detection: TurnDetection = field(default_factory=TurnDetection)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def parse_config(data: dict[str, Any], defaults: StreamConfig | None = None) -> StreamConfig:
    """Validates a `config` message against SPEC; raises ProtocolError naming the bad field."""
    base = defaults or StreamConfig()
    check_fields(
        data,
        {"sample_rate", "encoding", "language", "model", "partials", "word_timestamps", "turn_detection"},
        "config",
    )
    try:
        rate = validate_sample_rate(data.get("sample_rate", base.sample_rate))
    except AudioFormatError as exc:
        raise ProtocolError("bad_config", exc.message) from None
    encoding = data.get("encoding", base.encoding)
    if encoding not in ENCODINGS:
        raise ProtocolError("bad_config", f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    try:
        language = validate.language(data.get("language", base.language), code="bad_config")
    except validate.InputError as exc:
        raise ProtocolError(exc.code, exc.message) from None
    model = data.get("model", base.model)
    if model is not None and not isinstance(model, str):
        raise ProtocolError("bad_config", "model must be a string or null")
    flags = {}
    for name in ("partials", "word_timestamps"):
        value = data.get(name, getattr(base, name))
        if not isinstance(value, bool):
            raise ProtocolError("bad_config", f"{name} must be true or false")
        flags[name] = value
    td_raw = data.get("turn_detection", {})
    if td_raw is None:
        td_raw = {"mode": "none"}
    if not isinstance(td_raw, dict):
        raise ProtocolError("bad_config", "turn_detection must be an object")
    check_fields(td_raw, {"mode", "stop_secs", "max_silence_secs", "threshold"}, "turn_detection")
    td0 = base.turn_detection
    mode = td_raw.get("mode", td0.mode)
    if mode not in TURN_MODES:
        raise ProtocolError("bad_config", f"turn_detection.mode must be one of {', '.join(TURN_MODES)}, got {mode!r}")
    nums = {}
    for name, lo, hi in (("stop_secs", 0.0, 10.0), ("max_silence_secs", 0.1, 60.0), ("threshold", 0.0, 1.0)):
        value = td_raw.get(name, getattr(td0, name))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ProtocolError(
                "bad_config", f"turn_detection.{name} must be a number from {lo} to {hi}, got {value!r}"
            )
        nums[name] = float(value)
    if nums["max_silence_secs"] < nums["stop_secs"]:
        raise ProtocolError("bad_config", "turn_detection.max_silence_secs must be >= stop_secs")
    return StreamConfig(
        sample_rate=rate,
        encoding=encoding,
        language=language,
        model=model,
        turn_detection=TurnDetection(mode=mode, **nums),
        **flags,
    )


# ---------------------------------------------------------------- server → client
@dataclass
class Ready(Message):
    type: ClassVar[str] = "ready"
    session_id: str
    config: dict[str, Any]


@dataclass
class SpeechStart(Message):
    type: ClassVar[str] = "speech_start"
    session_id: str
    timestamp: float


@dataclass
class Partial(Message):
    type: ClassVar[str] = "partial"
    session_id: str
    text: str
    confidence: float
    timestamp: float


@dataclass
class SpeechEnd(Message):
    type: ClassVar[str] = "speech_end"
    session_id: str
    timestamp: float


@dataclass
class Word:
    word: str
    start: float
    end: float
    confidence: float


@dataclass
class EndOfTurn:
    """Why the turn ended. `probability`: Smart Turn's last answer. `checks`: every Smart Turn
    decision of the turn, {silence, probability, threshold} (silence in seconds when it ran);
    `held`: why a complete-looking turn waited longer ("continuation": its text ended on a word
    like "to"). The two later fields are additions: older clients ignore them."""

    reason: str
    probability: float | None
    checks: list[dict[str, float]] = field(default_factory=list)
    held: str | None = None


@dataclass
class Final(Message):
    type: ClassVar[str] = "final"
    session_id: str
    text: str
    start: float
    end: float
    words: list[Word]
    language: str | None
    end_of_turn: EndOfTurn

    def to_dict(self) -> dict[str, Any]:
        """The end_of_turn additions appear only when they say something, so a turn ended by
        `vad`, `flush` or `end` reads exactly as before."""
        data = super().to_dict()
        eot = data["end_of_turn"]
        if not eot.get("checks"):
            eot.pop("checks", None)
        if eot.get("held") is None:
            eot.pop("held", None)
        return data


SERVER_EVENTS: dict[str, type[Message]] = {
    cls.type: cls for cls in (Ready, SpeechStart, Partial, SpeechEnd, Final, Error)
}


def parse_server_event(data: dict[str, Any]) -> Message:
    """For clients: a server JSON event → its typed message."""
    cls = event_class(SERVER_EVENTS, data, "ASR")
    if cls is Final:
        words = [Word(**w) for w in data.get("words", [])]
        known = {f.name for f in fields(EndOfTurn)}
        eot = EndOfTurn(**{k: v for k, v in data["end_of_turn"].items() if k in known})
        rest = {k: v for k, v in data.items() if k not in ("type", "words", "end_of_turn")}
        return Final(words=words, end_of_turn=eot, **rest)
    return cls.from_dict(data)


CLIENT_TYPES = ("config", "flush", "end", "keepalive")
