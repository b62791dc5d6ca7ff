"""A thin test client for /v1/tts/stream that pairs each audio_chunk event with its binary frame."""

from __future__ import annotations

import asyncio
import json

import websockets


class TTSStream:
    def __init__(self, ws) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> TTSStream:
        ws = await websockets.connect(url + "/v1/tts/stream", max_size=None)
        stream = cls(ws)
        ready = await stream.event()
        assert ready["type"] == "ready", ready
        stream.ready = ready
        return stream

    async def send(self, **message) -> None:
        await self.ws.send(json.dumps(message))

    async def event(self, timeout: float = 60.0) -> dict:
        """The next JSON event; an audio_chunk comes back with its frame under `_audio`."""
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), "binary frame without a preceding audio_chunk event"
        event = json.loads(raw)
        if event["type"] == "audio_chunk":
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            assert isinstance(frame, bytes), "audio_chunk must be followed by exactly one binary frame"
            event["_audio"] = frame
        return event

    async def until(self, *types: str, timeout: float = 60.0) -> list[dict]:
        """Events up to and including the first of `types`."""
        events = []
        while True:
            event = await self.event(timeout)
            events.append(event)
            if event["type"] in types:
                return events

    async def close(self) -> None:
        await self.ws.close()
