"""Structured JSON logs with session ids. Content (audio, transcripts, text) stays out unless
LOG_CONTENT is on: `content()` is the one gate every caller goes through, and `safe_exc()` /
the formatter's traceback are the gate for exceptions, whose messages may quote user text
(a KeyError of a dict keyed by text, an engine error echoing its input, PyAV naming a file)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback

from .errors import CodedError

_LOG_CONTENT = False
# a WebSocket's `?api_key=` (browsers cannot send headers) is in the path uvicorn logs on accept
_QUERY_KEY = re.compile(r"(api_key=)[^&\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """Credentials out of a log line: `api_key=K` in a logged URL becomes `api_key=<redacted>`."""
    return _QUERY_KEY.sub(r"\1<redacted>", text) if "api_key=" in text.lower() else text


def safe_exc(exc: BaseException) -> str:
    """An exception for a log line: its type name, plus its message only when it is one of
    ours (a CodedError message is written by us, never copied from input). With LOG_CONTENT on,
    the full repr."""
    if _LOG_CONTENT:
        return repr(exc)
    name = type(exc).__qualname__
    if isinstance(exc, CodedError):
        return f"{name}({exc.code}: {exc.message})"
    return name


def safe_traceback(exc: BaseException) -> str:
    """The traceback (frames and code lines, the causes and contexts too) with each
    exception's message replaced by `safe_exc`: where it failed stays visible, what it was
    working on does not."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for i, item in enumerate(reversed(chain)):
        if i:
            parts.append("\nThe above exception led to the following one:\n\n")
        frames = traceback.extract_tb(item.__traceback__)
        if frames:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_list(frames))
        parts.append(safe_exc(item) + "\n")
    return "".join(parts).rstrip("\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:  # an exception passed as a field gets the same gate as a traceback
            entry.update({k: safe_exc(v) if isinstance(v, BaseException) else v for k, v in fields.items()})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)

    def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
        """Every `log.exception` / `exc_info=True` in the stack and its libraries (uvicorn's
        "Exception in ASGI application" included) passes here: messages stay out by default."""
        if _LOG_CONTENT or ei[1] is None:
            return super().formatException(ei)
        return safe_traceback(ei[1])


CONTENT_LOGGERS = ("websockets", "anthropic", "openai", "httpx", "httpcore", "twilio")


def setup(level: str = "INFO", log_content: bool = False) -> None:
    global _LOG_CONTENT
    _LOG_CONTENT = log_content
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # at DEBUG these libraries log what passes through them: websockets every frame (the client's
    # text), the anthropic SDK each request's options (the conversation); they stay at INFO
    # unless LOG_CONTENT is on
    for name in CONTENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if log_content else max(logging.INFO, root.level))


def content(text: str) -> str:
    """Returns text for a log line only when LOG_CONTENT is on; otherwise just its length."""
    return text if _LOG_CONTENT else f"<{len(text)} chars>"


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields) -> None:
    logger.log(level, msg, extra={"fields": fields})
