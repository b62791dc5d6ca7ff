"""The engine interface, and the models one process holds, loaded once and shared by every session.

Data flow: sessions and REST → `Transcriber` (services/asr/transcriber.py: the scheduler, which
decides what runs when: priority, batching, file slices, shedding) → an `ASREngine` (what turns
16 kHz audio into an engine-neutral `Transcript`, services/asr/transcript.py). The one engine
today is faster-whisper (services/asr/whisper.py); a second engine implements `ASREngine` and
is chosen in `Transcriber.__init__`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import metrics
from .config import ASRConfig
from .transcript import SAMPLE_RATE, Transcript
from .turn import SmartTurn
from .vad import SileroVAD, VADStream

if TYPE_CHECKING:
    from .transcriber import Transcriber


class Kind(StrEnum):
    """What a transcription is for; the order of the members is the scheduler's priority."""

    FINAL = "final"
    FILE = "file"
    PARTIAL = "partial"


KINDS = tuple(Kind)  # in priority order
ANALYSIS_THREADS = 2
WARM_ROUNDS = 3


@dataclass
class Request:
    """One transcription: 16 kHz mono float32 audio and how to decode it."""

    audio: np.ndarray
    kind: Kind = Kind.FINAL
    language: str | None = None
    word_timestamps: bool = False
    prompt: str | None = None
    temperatures: tuple[float, ...] | None = None
    owner: str | None = None  # the session asking: lets the scheduler shed its superseded partials
    backlog: bool = False  # set by the scheduler: a final taken while other sessions' finals wait
    # the audio just before `audio`, already transcribed as `prefix` (the previous turn of a stream):
    # decoded together, the words after the prefix are this request's (services/asr/context.py)
    context: np.ndarray | None = None
    prefix: str | None = None


class FileJob(Protocol):
    def step(self, budget_s: float) -> Transcript | None:
        """Decode for about `budget_s`; None while more is left, then the whole transcript."""


class ASREngine(Protocol):
    """What the scheduler needs from an engine. Every method but the properties blocks: the
    scheduler calls them from its worker threads."""

    name: str

    def load(self) -> None: ...

    @property
    def loaded(self) -> bool: ...

    def can_batch(self, request: Request) -> bool:
        """May this request share one call with others (`run_many`)?"""

    def batch_key(self, request: Request) -> Any:
        """Requests with equal keys may share a call."""

    def run(self, request: Request) -> Transcript: ...

    def run_many(self, requests: list[Request]) -> list[Transcript | Exception]: ...

    def open_file(self, request: Request) -> FileJob:
        """A long REST file, decoded in slices so stream requests go between them."""


class Engines:
    def __init__(self, config: ASRConfig) -> None:
        from .transcriber import Transcriber  # the scheduler imports this module's interface

        self.config = config
        self.transcriber: Transcriber = Transcriber(config)
        self.vad: SileroVAD | None = None
        self.smart_turn: SmartTurn | None = None
        # VAD and Smart Turn get their own small pool so a long transcription never delays turn taking
        self.analysis = ThreadPoolExecutor(max_workers=ANALYSIS_THREADS, thread_name_prefix="turn")
        self.load_error: str | None = None

    def load(self) -> None:
        """Blocking: every model, so /ready turns 200 only when a session can really run."""
        self.vad = SileroVAD()
        self.smart_turn = SmartTurn(self.config.smart_turn_model, self.config.turn_threads)
        self._warm_analysis()
        self.transcriber.load()

    def _warm_analysis(self, rounds: int = WARM_ROUNDS) -> None:
        """VAD and Smart Turn on every analysis thread at the same time, a few rounds.
        onnxruntime's arena grows over the first runs and again the first time two inferences
        overlap (Smart Turn: ~15-30 MiB in all) and never shrinks; done here, that happens before
        /ready instead of at some random moment under load, where a soak would read it as growth
        (docs/reliability.md, "ASR memory")."""
        barrier = threading.Barrier(ANALYSIS_THREADS)
        audio = np.random.default_rng(0).normal(0.0, 0.1, SAMPLE_RATE).astype(np.float32)

        def both() -> None:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                self.vad.stream().probabilities(audio[: 4 * 512])
                self.smart_turn.probability(audio)

        for future in [self.analysis.submit(both) for _ in range(ANALYSIS_THREADS)]:
            future.result()

    @property
    def loaded(self) -> bool:
        return self.transcriber.loaded and self.vad is not None and self.smart_turn is not None

    async def vad_probabilities(self, stream: VADStream, frames: np.ndarray) -> list[float]:
        started = time.perf_counter()
        probs = await asyncio.get_running_loop().run_in_executor(self.analysis, stream.probabilities, frames)
        if probs:
            metrics.vad_frame.observe((time.perf_counter() - started) / len(probs))
        return probs

    async def turn_probability(self, audio: np.ndarray) -> float:
        started = time.perf_counter()
        prob = await asyncio.get_running_loop().run_in_executor(self.analysis, self.smart_turn.probability, audio)
        metrics.turn_detector.observe(time.perf_counter() - started)
        return prob

    def shutdown(self) -> None:
        self.analysis.shutdown(wait=False, cancel_futures=True)
