"""A turn decoded after the one before it, when it follows that turn closely.

Why: a turn that starts within ASR_CONTEXT_GAP_SECS of the previous turn's speech end is most
often the same sentence going on after a pause that end-of-turn detection took for its end
("Please send the message … to everyone on the list"). Decoded alone, its first words have no
left context, and Whisper writes what a sentence would start with ("So everyone on the list").
Decoded after the previous turn's audio, with the previous final's text as Whisper's prefix (the
decoder is handed those words as already written, so it neither re-reads nor rewrites them), the
model hears and reads the sentence whole; what it writes after the prefix is this turn's text.
The previous final is never changed: finals are append-only.

Word timestamps align the prefix too, as a segment of its own, and keep only this turn's words
(services/asr/batching.py). Not used with a session prompt (Whisper's prompt and a prefix compete
for the same 224 tokens), or when the previous turn is longer than CONTEXT_MAX_S (the encoder's
cost grows with every second of it). A decode with context that fails Whisper's quality checks is
redone without it (services/asr/whisper.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from .endpointing import settled
from .transcript import SAMPLE_RATE

CONTEXT_MAX_S = 10.0


@dataclass(frozen=True)
class PreviousTurn:
    """The last finalized turn of a stream: its audio, where that audio starts and its speech ends
    (stream seconds), and its final's transcription (a task: it may still be running)."""

    audio: np.ndarray
    start: float
    speech_end: float
    transcript: asyncio.Task

    @classmethod
    def keep(cls, audio: np.ndarray, start: float, speech_end: float | None, transcript: asyncio.Task):
        """The turn to remember, or None when no later turn could use it."""
        if speech_end is None or len(audio) > CONTEXT_MAX_S * SAMPLE_RATE:
            return None
        return cls(audio, start, speech_end, transcript)

    def follows(self, turn_start: float, gap_s: float) -> bool:
        """Does a turn whose speech starts at `turn_start` follow this one closely enough?"""
        return gap_s > 0 and 0 <= turn_start - self.speech_end <= gap_s

    async def context(self, start: float) -> tuple[np.ndarray | None, str | None]:
        """(audio, prefix) to decode before a turn whose audio starts at `start`: this turn's audio
        up to there (digital silence fills a gap the ring no longer holds), and its final's text.
        (None, None) when its final has no text or failed: then the turn is decoded alone."""
        result = await settled(self.transcript)
        text = "" if result is None else result.text.strip()
        if not text:
            return None, None
        cut = int(round((start - self.start) * SAMPLE_RATE))
        head = self.audio[: max(0, cut)]
        if cut > len(self.audio):
            head = np.concatenate([head, np.zeros(cut - len(self.audio), dtype=np.float32)])
        return head, text
