"""A memory bound per connection: how much audio and text one session may hold at once.

Why: every other limit is per message (frame size, text per request); a client can still make a
session hold more and more — many queued requests, a never-ending turn, audio buffered for
sentences not yet played. `Budget` is asked at each buffering point with what the session holds
plus what it is about to add; past the bound it raises `BufferFull` (code `buffer_full`, HTTP
413), which the transport sends as an error event, so the input is refused, never silently
dropped, and what was accepted before stays.

Where it is wired (MAX_BUFFERED_AUDIO_SECS / MAX_BUFFERED_TEXT_CHARS):
- ASR session: the open turn's audio buffer. A turn reaching the budget is finalized (as a
  max-duration turn), not refused: `turn_cap()` caps ASR_MAX_TURN_SECS.
- TTS session: the text of a session's unfinished requests (`synthesize` and `text`), and the
  audio held for a non-streaming request.
- Orchestrator: agent audio received from TTS for sentences still waiting to play (the speech
  queue); past it the answer stops with a `buffer_full` error event, what was sent stays.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol.base import ProtocolError


class BufferFull(ProtocolError):
    """A ProtocolError, so every session that answers bad messages answers this one too."""

    status = 413


@dataclass(frozen=True)
class Budget:
    max_audio_s: float = 60.0
    max_text_chars: int = 16384

    @classmethod
    def from_config(cls, common) -> Budget:
        return cls(common.max_buffered_audio_s, common.max_buffered_text_chars)

    def audio(self, held_s: float, adding_s: float = 0.0, what: str = "audio") -> None:
        if held_s + adding_s > self.max_audio_s:
            raise BufferFull(
                "buffer_full",
                f"{what} would exceed this connection's {self.max_audio_s:g} s buffer (MAX_BUFFERED_AUDIO_SECS); "
                "refused",
            )

    def text(self, held_chars: int, adding_chars: int = 0, what: str = "text") -> None:
        if held_chars + adding_chars > self.max_text_chars:
            raise BufferFull(
                "buffer_full",
                f"{what} would exceed this connection's {self.max_text_chars} queued characters "
                "(MAX_BUFFERED_TEXT_CHARS); refused",
            )

    def turn_cap(self, max_turn_s: float, pad_s: float = 0.0) -> float:
        """The longest turn a session may buffer: ASR_MAX_TURN_SECS, or less to fit the budget."""
        return max(1.0, min(max_turn_s, self.max_audio_s - pad_s))
