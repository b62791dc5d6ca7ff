"""ASR clients: the streaming WebSocket (`/v1/asr/stream`) and the OpenAI-compatible REST upload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import httpx
import numpy as np

from services.common.audio import encode
from services.common.protocol import asr
from services.common.protocol.base import Message

from ._stream import JsonEventStream, StreamClosed
from ._ws import auth_headers, http_url
from .backoff import Backoff


class ASRStream(JsonEventStream):
    """One recognition session. Send audio (bytes in the configured encoding, or float32 samples at
    the configured rate), read typed events (`asr.SpeechStart`, `asr.Partial`, `asr.Final`, …).

    `async for event in stream` yields events until the server closes the stream."""

    path = "/v1/asr/stream"

    def __init__(
        self,
        url: str,
        config: asr.StreamConfig | dict[str, Any] | None = None,
        api_key: str | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        super().__init__(url, api_key, backoff, open_timeout)
        if isinstance(config, asr.StreamConfig):
            config = asdict(config)
        # validated here with the server's own rules, so a bad config fails before any socket opens
        self.config = asr.parse_config(dict(config or {}))

    async def _handshake(self) -> Message:
        await self.send_json({"type": "config", **self.config.to_dict()})
        cfg = self.config

        def matches(ready: asr.Ready) -> bool:
            got = ready.config or {}
            return got.get("sample_rate", cfg.sample_rate) == cfg.sample_rate and got.get("encoding", cfg.encoding) == (
                cfg.encoding
            )

        return await self._await_ready(asr.parse_server_event, asr.Ready, matches)

    async def send_audio(self, audio: bytes | np.ndarray) -> None:
        """Raw bytes go as they are; a float array is encoded in the session's encoding."""
        data = audio if isinstance(audio, (bytes, bytearray, memoryview)) else encode(audio, self.config.encoding)
        await self._send(bytes(data))

    async def flush(self) -> None:
        await self.send_json({"type": "flush"})

    async def end(self) -> None:
        await self.send_json({"type": "end"})

    async def keepalive(self) -> None:
        await self.send_json({"type": "keepalive"})

    async def recv(self) -> Message:
        return asr.parse_server_event(await self.recv_json())

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.recv()
            except StreamClosed:
                return


async def transcribe_file(
    url: str,
    data: bytes,
    filename: str = "audio.wav",
    api_key: str | None = None,
    response_format: str = "json",
    timeout: float = 120.0,
    **fields: Any,
) -> dict[str, Any] | str:
    """POST /v1/audio/transcriptions (OpenAI-compatible). JSON formats return a dict, others text."""
    form = {"model": fields.pop("model", "whisper-1"), "response_format": response_format}
    form.update({k: str(v) for k, v in fields.items() if v is not None})
    async with httpx.AsyncClient(base_url=http_url(url), headers=auth_headers(api_key), timeout=timeout) as client:
        response = await client.post("/v1/audio/transcriptions", data=form, files={"file": (filename, data)})
        response.raise_for_status()
        return response.json() if response_format in ("json", "verbose_json") else response.text
