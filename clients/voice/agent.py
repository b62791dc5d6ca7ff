"""Agent client for the orchestrator's binary stream (`/v1/agent/stream`, docs/orchestrator.md).

Every message is `[type u8][flags u8][payload]` (services/common/protocol/agent.py). This class
sends the client side (audio_start, audio_chunk, audio_end, user_text) and yields `Frame`s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from services.common.audio import encode, float_to_int16
from services.common.protocol.agent import Frame, FrameType, pack, unpack
from services.common.protocol.base import Error

from ._stream import ServerError, StreamClosed, WsConnection
from .backoff import Backoff

INPUT_SAMPLE_RATE = 16000


class AgentStream(WsConnection):
    """The binary agent stream; `start()` is its handshake (audio_start → ready)."""

    path = "/v1/agent/stream"

    def __init__(
        self, url: str, api_key: str | None = None, backoff: Backoff | None = None, open_timeout: float = 5.0
    ) -> None:
        super().__init__(url, api_key, backoff, open_timeout)
        self.ready: dict[str, Any] | None = None

    async def connect(self) -> AgentStream:
        await self._open()
        return self

    # ------------------------------------------------------------- client → server
    async def send_frame(
        self, frame_type: FrameType, payload: bytes | str | dict | None = None, flags: int = 0
    ) -> None:
        await self.send_raw(pack(frame_type, payload, flags))

    async def send_raw(self, data: bytes) -> None:
        await self._send(data)

    async def start(self, config: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Sends audio_start with the session config and waits for `ready` (0x08). Frames that come
        before it are dropped, except an error, which raises ServerError."""
        await self.send_frame(FrameType.AUDIO_START, config)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv()
                if frame.type == FrameType.READY:
                    self.ready = frame.json()
                    return self.ready
                if frame.type == FrameType.ERROR:
                    raise ServerError(Error.from_dict(frame.json()))

    async def send_audio(self, audio: bytes | np.ndarray) -> None:
        """PCM s16le 16 kHz mono bytes, or float32 samples at 16 kHz (converted here)."""
        data = audio if isinstance(audio, (bytes, bytearray)) else encode(np.asarray(audio, np.float32), "pcm_s16le")
        await self.send_frame(FrameType.AUDIO_CHUNK, bytes(data))

    async def stream_audio(self, samples: np.ndarray, chunk_ms: int = 20, realtime: bool = False) -> None:
        """Sends float32 16 kHz samples in `chunk_ms` frames; `realtime` paces them like a microphone."""
        step = INPUT_SAMPLE_RATE * chunk_ms // 1000
        pcm = float_to_int16(np.asarray(samples, np.float32)).astype("<i2").tobytes()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, start in enumerate(range(0, len(pcm) // 2, step)):
            await self.send_frame(FrameType.AUDIO_CHUNK, pcm[start * 2 : (start + step) * 2])
            if realtime:
                await asyncio.sleep(max(0.0, t0 + (i + 1) * chunk_ms / 1000 - loop.time()))

    async def end_audio(self) -> None:
        """audio_end: the user's turn is over now (no need to wait for end-of-turn detection)."""
        await self.send_frame(FrameType.AUDIO_END)

    async def send_text(self, text: str) -> None:
        """A typed user turn (0x0A event `user_text`), answered like a spoken one."""
        await self.send_frame(FrameType.EVENT, {"event": "user_text", "text": text})

    # ------------------------------------------------------------- server → client
    async def recv(self) -> Frame:
        data = await self.recv_raw()
        if isinstance(data, str):
            data = data.encode("utf-8")
        return unpack(data)

    async def __aiter__(self) -> AsyncIterator[Frame]:
        while True:
            try:
                yield await self.recv()
            except StreamClosed:
                return


def pcm16_samples(frame: Frame) -> np.ndarray:
    """A tts_audio frame's payload (PCM s16le) → float32 samples."""
    return np.frombuffer(frame.payload, dtype="<i2").astype(np.float32) / 32768.0
