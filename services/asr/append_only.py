"""Append-only text streams (OpenAI `…transcription.delta`, Wyoming `transcript-chunk`) from our
partials, which are re-decodes of the whole turn so far and may change any word.

A delta can only append, so only the part of a partial that is likely to stay is sent: everything
before its last word (Whisper's last word is the one still forming, often with punctuation that
goes when the sentence continues). The final then sends whatever extends what was sent. When the
final disagrees with what was sent, nothing more is sent: the completed transcript (which always
carries the whole final text) is the one to keep.
"""

from __future__ import annotations


class AppendOnlyText:
    def __init__(self) -> None:
        self.sent = ""

    def partial(self, text: str) -> str:
        """The new stable text of a partial ('' when nothing new)."""
        body = text.rstrip()
        cut = body.rfind(" ")
        stable = body[: cut + 1] if cut > 0 else ""
        return self._extend(stable)

    def final(self, text: str) -> str:
        """What the final adds to the sent text ('' when nothing, or when it disagrees)."""
        return self._extend(text)

    def _extend(self, text: str) -> str:
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent) :], text
        return piece
