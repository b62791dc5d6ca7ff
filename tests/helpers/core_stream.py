"""Drive the transport-free ASR core directly: audio in as fast as it takes it, events out.

Stream time is the sample clock, so what a test or the benchmark sees does not depend on how fast
the bytes are pushed; no server or socket is involved. Used by tests/asr and bench/asr_stream_wer.
"""

from __future__ import annotations

import asyncio

import numpy as np

from services.asr.core import AudioIn, Closed, Configure, End, SessionCore
from services.asr.engines import Engines
from services.common.audio import encode
from services.common.protocol.asr import Final, StreamConfig, TurnDetection


class Collector:
    """The `send` a transport would pass to `SessionCore.open`: every event, in order."""

    def __init__(self) -> None:
        self.events: list = []
        self.closed = asyncio.Event()

    async def __call__(self, event) -> None:
        self.events.append(event)
        if isinstance(event, Closed):
            self.closed.set()

    def finals(self) -> list[Final]:
        return [e for e in self.events if isinstance(e, Final)]


async def core_finals(
    engines: Engines, audio: np.ndarray, detection: TurnDetection, step: int = 1600, timeout_s: float = 120.0
) -> list[Final]:
    """The finals of `audio` (16 kHz float32) streamed through one core, partials off, then `end`."""
    core = SessionCore(engines.config, engines)
    out = Collector()
    core.open(out)
    await core.handle(Configure(StreamConfig(partials=False, turn_detection=detection)))
    for i in range(0, len(audio), step):
        await core.handle(AudioIn(encode(audio[i : i + step], "pcm_s16le")))
    await core.handle(End())
    await asyncio.wait_for(out.closed.wait(), timeout_s)
    await core.close()
    return out.finals()
