"""The engine-neutral transcript: what every ASR engine returns and what the REST formats and the
stream sessions are built from. Also the one home of the service's sample rate and `clamp`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SAMPLE_RATE = 16000  # every engine, the VAD and Smart Turn take 16 kHz mono float32


def clamp(value: float, lo: float, hi: float) -> float:
    return float(min(hi, max(lo, value)))


@dataclass
class WordTiming:
    word: str
    start: float
    end: float
    probability: float


@dataclass
class SegmentResult:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[WordTiming] = field(default_factory=list)


@dataclass
class Transcript:
    text: str
    language: str | None
    language_probability: float
    duration: float
    segments: list[SegmentResult]

    @property
    def words(self) -> list[WordTiming]:
        return [w for s in self.segments for w in s.words]

    @property
    def confidence(self) -> float:
        """exp(mean token log-prob) over segments, in [0, 1]; 0 for no segments."""
        if not self.segments:
            return 0.0
        return float(min(1.0, max(0.0, math.exp(sum(s.avg_logprob for s in self.segments) / len(self.segments)))))


def clamped_segment(index: int, segment: Any, duration: float) -> SegmentResult:
    """An engine's segment (attributes start, end, text, tokens, words, …) with every time clamped
    into the audio: random test models emit timestamps past the end, and no reported time may."""
    duration = math.floor(duration * 1000) / 1000  # times are reported to the ms: never round past the end
    start = clamp(segment.start, 0.0, duration)
    end = clamp(segment.end, start, duration)
    words = []
    last = start
    for w in segment.words or []:
        w_start = clamp(w.start, last, end)
        w_end = clamp(w.end, w_start, end)
        words.append(WordTiming(w.word, round(w_start, 3), round(w_end, 3), float(w.probability)))
        last = w_start
    return SegmentResult(
        id=index,
        seek=int(segment.seek),
        start=round(start, 3),
        end=round(end, 3),
        text=segment.text,
        tokens=list(segment.tokens),
        temperature=float(segment.temperature or 0.0),
        avg_logprob=float(segment.avg_logprob),
        compression_ratio=float(segment.compression_ratio),
        no_speech_prob=float(segment.no_speech_prob),
        words=words,
    )
