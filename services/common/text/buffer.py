"""Incremental text (LLM tokens) → pieces released as soon as they are complete.

A piece is released when a sentence end is followed by whitespace (so "3.5" or "Mr." followed
by more letters does not cut early) or when the buffer passes the piece cap, where it is cut at
the last clause break or space. `flush()` releases whatever is left, complete or not.
"""

from __future__ import annotations

from .split import _SENTENCE_END, _cut_long


class IncrementalText:
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._buffer = ""

    @property
    def pending(self) -> str:
        return self._buffer

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        released: list[str] = []
        while True:
            match = _SENTENCE_END.search(self._buffer)
            if match is None:
                break
            sentence = " ".join(self._buffer[: match.start() + len(match.group(0).rstrip())].split())
            self._buffer = self._buffer[match.end() :]
            if sentence:
                released.extend(_cut_long(sentence, self.max_chars))
        if len(self._buffer) > self.max_chars:
            parts = _cut_long(self._buffer, self.max_chars)
            released.extend(parts[:-1])
            self._buffer = parts[-1] if parts else ""
        return released

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        rest = " ".join(rest.split())
        return _cut_long(rest, self.max_chars) if rest else []
