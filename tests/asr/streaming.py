"""Test helper: stream audio to the running ASR service over a real WebSocket and collect events."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from services.common.audio import encode


@dataclass
class StreamResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return self.of("final")


async def collect(ws, result: StreamResult) -> None:
    try:
        async for message in ws:
            assert isinstance(message, str), "the ASR service sends JSON text only"
            result.events.append(json.loads(message))
    except websockets.ConnectionClosed:
        pass
    result.close_code = ws.close_code
    result.close_reason = ws.close_reason or ""


async def stream_audio(
    url: str,
    audio: np.ndarray,
    config: dict[str, Any] | None = None,
    sample_rate: int = 16000,
    encoding: str = "pcm_s16le",
    chunk_s: float = 0.1,
    speed: float = 1.0,
    flush_at: float | None = None,
    timeout: float = 120.0,
) -> StreamResult:
    """Send `audio` in `chunk_s` frames at `speed`× real time (0 = as fast as possible), then `end`,
    and return every event until the server closes."""
    result = StreamResult()
    async with websockets.connect(url + "/v1/asr/stream", max_size=None) as ws:
        reader = asyncio.create_task(collect(ws, result))
        if config is not None:
            await ws.send(json.dumps({"type": "config", "sample_rate": sample_rate, "encoding": encoding, **config}))
        step = max(1, int(chunk_s * sample_rate))
        flushed = False
        for start in range(0, len(audio), step):
            if flush_at is not None and not flushed and start >= flush_at * sample_rate:
                await ws.send(json.dumps({"type": "flush"}))
                flushed = True
            await ws.send(encode(audio[start : start + step], encoding))
            if speed > 0:
                await asyncio.sleep(chunk_s / speed)
            else:
                await asyncio.sleep(0)
        await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(reader, timeout)
    return result
