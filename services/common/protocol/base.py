from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from services.common.validate import InputError
from services.common.validate import parse_json_object as _parse_json_object


class ProtocolError(InputError):
    """A client message the server cannot take; becomes an `error` event, the session goes on."""


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


def parse_json_object(text: str | bytes) -> dict[str, Any]:
    """A text frame → dict with a string `type`, through the one guarded parser; ProtocolError else."""
    try:
        return _parse_json_object(text)
    except InputError as exc:
        raise ProtocolError(exc.code, exc.message) from None


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
