from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


class ProtocolError(ValueError):
    """A client message the server cannot take; becomes an `error` event, the session goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Message:
    type: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        data = {"type": self.type}
        data.update({k: v for k, v in asdict(self).items()})
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Error(Message):
    type: ClassVar[str] = "error"
    code: str
    message: str
    fatal: bool = False
    session_id: str = ""
    request_id: str | None = None


def parse_json_object(text: str) -> dict[str, Any]:
    """A text frame → dict with a string `type`, or ProtocolError."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolError("bad_json", "text frames must be JSON objects") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", "text frames must be JSON objects")
    if not isinstance(data.get("type"), str):
        raise ProtocolError("missing_type", "every message needs a string 'type' field")
    return data


def check_fields(data: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(data) - allowed - {"type"})
    if unknown:
        raise ProtocolError("unknown_field", f"{what}: unknown field(s) {', '.join(unknown)}")


def event_class(events: dict[str, type[Message]], data: dict[str, Any], service: str) -> type[Message]:
    """For clients: the message class of a server event, or ProtocolError for an unknown type."""
    cls = events.get(data.get("type", ""))
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown {service} event {data.get('type')!r}")
    return cls
