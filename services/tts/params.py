"""Validation of client-supplied synthesis settings, shared by the WebSocket and REST APIs.
Every failure is a ProtocolError with a code and a message naming the field."""

from __future__ import annotations

from typing import Any

from services.common.audio import ENCODINGS, AudioFormatError, validate_sample_rate
from services.common.protocol.base import ProtocolError

RANGES = {
    "exaggeration": (0.0, 2.0),
    "emotion": (0.0, 2.0),
    "cfg_weight": (0.0, 3.0),
    "temperature": (0.05, 5.0),
    "speed": (0.25, 4.0),
}


def number(data: dict[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if value is None:
        return default
    low, high = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ProtocolError("bad_parameter", f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def seed(data: dict[str, Any], default: int | None) -> int | None:
    value = data.get("seed", default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise ProtocolError("bad_parameter", f"seed must be an integer from 0 to 2^31-1, got {value!r}")
    return value


def chunk_size(data: dict[str, Any]) -> int | None:
    value = data.get("chunk_size")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 4 <= value <= 500:
        raise ProtocolError(
            "bad_parameter", f"chunk_size must be an integer from 4 to 500 (speech tokens), got {value!r}"
        )
    return value


def encoding(value: Any) -> str:
    if value not in ENCODINGS:
        raise ProtocolError("bad_encoding", f"encoding must be one of {', '.join(ENCODINGS)}, got {value!r}")
    return value


def sample_rate(value: Any) -> int:
    try:
        return validate_sample_rate(value)
    except AudioFormatError as exc:
        raise ProtocolError("bad_sample_rate", exc.message) from None


def text(value: Any, max_chars: int, field: str = "text") -> str:
    if not isinstance(value, str):
        raise ProtocolError("bad_text", f"{field} must be a string")
    if not value.strip():
        raise ProtocolError("empty_text", f"{field} is empty or only whitespace")
    if len(value) > max_chars:
        raise ProtocolError("text_too_long", f"{field} has {len(value)} characters; the limit is {max_chars}")
    return value


def optional_str(data: dict[str, Any], name: str, max_len: int = 128) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ProtocolError("bad_parameter", f"{name} must be a non-empty string of at most {max_len} characters")
    return value
