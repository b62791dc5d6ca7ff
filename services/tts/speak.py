"""One synthesis request, shared by the WebSocket session and REST: text pieces in order →
engine audio chunks, with the request's metrics (time to first audio, real-time factor)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from . import metrics
from .engines.base import CancelToken, SynthesisParams
from .synthesis import Synthesizer


@dataclass
class RequestStats:
    first_audio_ms: float | None = None
    audio_samples: int = 0
    synth_seconds: float = 0.0
    pieces: int = 0
    ready_at: float | None = field(default=None, repr=False)  # when the first piece was ready


async def speak(
    synth: Synthesizer,
    pieces: AsyncIterator[str],
    conditionals: object,
    params: SynthesisParams,
    cancel: CancelToken,
    stats: RequestStats,
) -> AsyncIterator[np.ndarray]:
    """Yields float32 chunks at the engine's rate. `first_audio_ms` runs from the moment the first
    piece was ready to speak (for incremental text: when its sentence was complete) to its first
    audio; time spent waiting for the client's next text is not synthesis time."""
    params = params.with_seed()
    rate = synth.engine.sample_rate
    async for piece in pieces:
        if cancel.cancelled:
            return
        stats.pieces += 1
        started = time.monotonic()
        if stats.ready_at is None:
            stats.ready_at = started
        piece_params = params if stats.pieces == 1 else _next_seed(params, stats.pieces)
        async with contextlib.aclosing(synth.stream(piece, conditionals, piece_params, cancel)) as chunks:
            async for chunk in chunks:
                if cancel.cancelled:
                    return
                if stats.first_audio_ms is None:
                    stats.first_audio_ms = (time.monotonic() - stats.ready_at) * 1000.0
                    metrics.TIME_TO_FIRST_AUDIO.observe(stats.first_audio_ms / 1000.0)
                stats.audio_samples += len(chunk)
                yield chunk
        stats.synth_seconds += time.monotonic() - started
    audio_s = stats.audio_samples / rate
    if audio_s > 0:
        metrics.REAL_TIME_FACTOR.observe(stats.synth_seconds / audio_s)
        metrics.AUDIO_SECONDS.inc(audio_s)


def _next_seed(params: SynthesisParams, index: int) -> SynthesisParams:
    from dataclasses import replace

    return replace(params, seed=(int(params.seed or 0) + index * 104729) % (2**31 - 1))


async def iterate(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item
