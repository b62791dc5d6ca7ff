"""A turn and the sentences it speaks: the bookkeeping that decides what the user heard."""

from __future__ import annotations

import asyncio
import itertools
import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from .waterfall import Waterfall

# below this rate of speech (s per character) a sentence whose synthesis is unfinished is assumed
# longer than what arrived so far, so a cut early in it keeps few words
EXPECTED_S_PER_CHAR = 0.065


class SentenceKind(StrEnum):
    ANSWER = "answer"  # a sentence of Claude's answer: the only kind that enters the history
    ACK = "ack"  # the fast acknowledgment
    APOLOGY = "apology"  # spoken when Claude fails
    ECHO = "echo"  # direct mode: the user's own words


@dataclass
class Sentence:
    """One TTS request: a sentence of the answer, or the ack / apology."""

    index: int
    text: str
    request_id: str
    kind: SentenceKind | str
    received_s: float = 0.0  # audio received from TTS
    played_s: float = 0.0  # audio the transport reported played
    synth_done: bool = False
    pending: list[tuple[np.ndarray, int]] = field(default_factory=list)  # audio waiting for its turn


@dataclass
class Turn:
    id: int
    user_text: str
    waterfall: Waterfall
    sentences: list[Sentence] = field(default_factory=list)
    emit_index: int = 0  # sentences before this one are fully handed to the transport
    llm_finished: bool = False
    cancelled: bool = False
    recorded: bool = False  # the assistant answer is in the history
    tts_failed: bool = False
    task: asyncio.Task | None = None
    advanced: asyncio.Event = field(default_factory=asyncio.Event)
    chunks: itertools.count = field(default_factory=itertools.count)

    def answer_text(self) -> str:
        """The whole answer as Claude gave it (what the history keeps when nothing was cut)."""
        return "".join(s.text + " " for s in self.sentences if s.kind == SentenceKind.ANSWER)

    def heard_text(self) -> str:
        """The answer text whose audio was played: whole sentences, then the played share (by
        words) of the sentence that was cut. Acks and apologies are not part of the answer."""
        parts: list[str] = []
        for s in self.sentences:
            if s.kind != SentenceKind.ANSWER:
                continue
            if s.played_s <= 0:
                break
            if s.synth_done and s.played_s >= s.received_s - 1e-3:
                parts.append(s.text)
                continue
            expected = s.received_s if s.synth_done else max(s.received_s, EXPECTED_S_PER_CHAR * len(s.text))
            words = s.text.split()
            keep = math.floor(len(words) * min(1.0, s.played_s / expected)) if expected > 0 else 0
            if keep:
                parts.append(" ".join(words[:keep]))
            break
        return " ".join(parts)
