"""The one validator per kind of client input: JSON messages, identifiers, text.

Every JSON decode of client data and every id that becomes a path or a storage key goes through
here, so a limit is set in one place and holds on every route and transport. Limits are checked
*before* the expensive step (nesting is counted before `json.loads` recurses), not after.
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.common.errors import CodedError

MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 1 << 20
# letters, digits, '_', '.', '-'; first a letter or digit (so never '.', '..' or a hidden name)
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class InputError(CodedError):
    """Bad client input: the request or message is refused, the session goes on."""

    status = 400


def _depth_ok(text: str, max_depth: int) -> bool:
    """Bracket nesting outside strings stays within `max_depth` (a linear scan, no recursion)."""
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _has_lone_surrogate(value: Any) -> bool:
    """Any string (key or value) that is not valid Unicode text, e.g. a lone '\\ud800' escape."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(raw: str | bytes, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Client JSON → Python value, bounded in bytes and nesting, valid Unicode throughout.

    Raises InputError with code `bad_json` (syntax, encoding, nesting, surrogates) or
    `too_large` (bytes). NaN / Infinity literals are refused: they are not JSON.
    """
    if len(raw) > max_bytes:
        raise InputError("too_large", f"JSON message over {max_bytes} bytes", status=413)
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("bad_json", "JSON must be UTF-8 text") from None
    if not _depth_ok(raw, max_depth):
        raise InputError("bad_json", f"JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise InputError("bad_json", "not valid JSON") from None
    if _has_lone_surrogate(value):
        raise InputError("bad_json", "JSON strings must be valid Unicode (lone surrogate escape)")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(raw: str | bytes, **limits: int) -> dict[str, Any]:
    """A client message: a JSON object with a string `type`."""
    data = parse_json(raw, **limits)
    if not isinstance(data, dict):
        raise InputError("bad_json", "messages must be JSON objects")
    if not isinstance(data.get("type"), str):
        raise InputError("missing_type", "every message needs a string 'type' field")
    return data


def identifier(value: Any, what: str = "id") -> str:
    """An id that may become a file name or a storage key: `ID_PATTERN`, matched in full."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InputError(
            f"invalid_{what}" if what != "id" else "invalid_id",
            f"{what} must be 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit",
        )
    return value


LANGUAGE_PATTERN = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})?")


def language(value: Any, code: str = "bad_language") -> str | None:
    """A language code ('en', 'haw', 'pt-BR') or None for "detect it"; anything else is refused."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or LANGUAGE_PATTERN.fullmatch(value) is None:
        raise InputError(code, "language must be a code like 'en' (or empty/null to detect it)")
    return value


def text(value: Any, what: str = "text", *, max_chars: int | None = None) -> str:
    """User text: a string of valid Unicode, within `max_chars`."""
    if not isinstance(value, str):
        raise InputError("invalid_text", f"{what} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("invalid_text", f"{what} is not valid Unicode text (lone surrogate)") from None
    if max_chars is not None and len(value) > max_chars:
        raise InputError("text_too_long", f"{what} is longer than {max_chars} characters", status=413)
    return value
