"""The models one process holds, loaded once and shared by every session."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import metrics
from .config import ASRConfig
from .transcriber import Transcriber
from .turn import SmartTurn
from .vad import SileroVAD, VADStream


class Engines:
    def __init__(self, config: ASRConfig) -> None:
        self.config = config
        self.transcriber = Transcriber(config)
        self.vad: SileroVAD | None = None
        self.smart_turn: SmartTurn | None = None
        # VAD and Smart Turn get their own small pool so a long transcription never delays turn taking
        self.analysis = ThreadPoolExecutor(max_workers=2, thread_name_prefix="turn")
        self.load_error: str | None = None

    def load(self) -> None:
        """Blocking: every model, so /ready turns 200 only when a session can really run."""
        self.vad = SileroVAD()
        self.smart_turn = SmartTurn(self.config.smart_turn_model, self.config.turn_threads)
        self.transcriber.load()

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
