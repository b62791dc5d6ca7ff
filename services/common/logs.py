"""Structured JSON logs with session ids. Content (audio, transcripts, text) stays out unless
LOG_CONTENT is on: `content()` is the one gate every caller goes through."""

from __future__ import annotations

import json
import logging
import sys
import time

_LOG_CONTENT = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO", log_content: bool = False) -> None:
    global _LOG_CONTENT
    _LOG_CONTENT = log_content
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def content(text: str) -> str:
    """Returns text for a log line only when LOG_CONTENT is on; otherwise just its length."""
    return text if _LOG_CONTENT else f"<{len(text)} chars>"


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields) -> None:
    logger.log(level, msg, extra={"fields": fields})
