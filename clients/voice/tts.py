"""TTS clients: the streaming WebSocket (`/v1/tts/stream`) and the REST helpers (speech, voices)."""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import numpy as np

from services.common.audio import decode
from services.common.protocol import tts
from services.common.protocol.base import Error, Message, ProtocolError

from ._stream import JsonEventStream, StreamClosed
from ._ws import auth_headers, http_url
from .backoff import Backoff


@dataclass
class AudioFrame:
    """An `audio_chunk` event joined with the binary frame that follows it."""

    chunk: tts.AudioChunk
    data: bytes
    encoding: str

    @property
    def request_id(self) -> str:
        return self.chunk.request_id

    @property
    def sample_rate(self) -> int:
        return self.chunk.sample_rate

    def samples(self) -> np.ndarray:
        return decode(self.data, self.encoding)


class TTSStream(JsonEventStream):
    """One synthesis session. `synthesize()` returns the request id; `recv()` yields
    `AudioFrame`s and typed events (`tts.SynthesisComplete`, `tts.Cancelled`, `Error`, …)."""

    path = "/v1/tts/stream"

    def __init__(
        self,
        url: str,
        config: tts.SessionConfig | dict[str, Any] | None = None,
        api_key: str | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        super().__init__(url, api_key, backoff, open_timeout)
        if isinstance(config, tts.SessionConfig):
            config = {k: v for k, v in asdict(config).items() if v is not None}
        self.config: dict[str, Any] = dict(config or {})
        unknown = set(self.config) - tts.CLIENT_FIELDS["config"]
        if unknown:
            raise ProtocolError("unknown_field", f"config: unknown field(s) {', '.join(sorted(unknown))}")
        self.encoding = self.config.get("encoding", "pcm_f32le")
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:6]

    async def _handshake(self) -> Message:
        if self.config:
            await self.send_json({"type": "config", **self.config})
        want_rate = self.config.get("sample_rate")
        want_enc = self.config.get("encoding")

        def matches(ready: tts.Ready) -> bool:
            return (want_rate is None or ready.sample_rate == want_rate) and (
                want_enc is None or ready.encoding == want_enc
            )

        ready = await self._await_ready(tts.parse_server_event, tts.Ready, matches)
        self.encoding = ready.encoding or self.encoding
        return ready

    def new_request_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def synthesize(self, text: str, request_id: str | None = None, **options: Any) -> str:
        request_id = request_id or self.new_request_id()
        await self.send_json({"type": "synthesize", "request_id": request_id, "text": text, **options})
        return request_id

    async def text(self, text: str, request_id: str | None = None) -> None:
        msg: dict[str, Any] = {"type": "text", "text": text}
        if request_id:
            msg["request_id"] = request_id
        await self.send_json(msg)

    async def flush(self, request_id: str | None = None) -> None:
        await self.send_json({"type": "flush", **({"request_id": request_id} if request_id else {})})

    async def end(self, request_id: str | None = None) -> None:
        await self.send_json({"type": "end", **({"request_id": request_id} if request_id else {})})

    async def cancel(self, request_id: str | None = None) -> None:
        await self.send_json({"type": "cancel", **({"request_id": request_id} if request_id else {})})

    async def register_voice(self, voice_id: str, wav: bytes, name: str | None = None) -> None:
        msg: dict[str, Any] = {
            "type": "register_voice",
            "voice_id": voice_id,
            "reference_audio": base64.b64encode(wav).decode("ascii"),
        }
        if name:
            msg["name"] = name
        await self.send_json(msg)

    async def recv(self) -> AudioFrame | Message:
        event = tts.parse_server_event(await self.recv_json())
        if isinstance(event, tts.AudioChunk):
            data = await self.recv_raw()
            if not isinstance(data, bytes):
                raise ProtocolError("missing_audio", f"{self.url}: audio_chunk not followed by a binary frame")
            return AudioFrame(event, data, event.encoding or self.encoding)
        return event

    async def __aiter__(self) -> AsyncIterator[AudioFrame | Message]:
        while True:
            try:
                yield await self.recv()
            except StreamClosed:
                return

    async def speak(self, text: str, **options: Any) -> tuple[np.ndarray, int]:
        """Synthesizes one text and collects its audio: (float32 samples, sample rate)."""
        request_id = await self.synthesize(text, **options)
        parts: list[np.ndarray] = []
        rate = int(getattr(self.ready, "sample_rate", tts.DEFAULT_SAMPLE_RATE))
        while True:
            event = await self.recv()
            if isinstance(event, AudioFrame) and event.request_id == request_id:
                parts.append(event.samples())
                rate = event.sample_rate
            elif isinstance(event, tts.SynthesisComplete) and event.request_id == request_id:
                break
            elif isinstance(event, Error) and event.request_id in (None, request_id):
                raise RuntimeError(f"{event.code}: {event.message}")
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), rate


# ----------------------------------------------------------------- REST
def _client(url: str, api_key: str | None, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=http_url(url), headers=auth_headers(api_key), timeout=timeout)


async def speech(
    url: str,
    text: str,
    voice: str = "default",
    response_format: str = "wav",
    api_key: str | None = None,
    timeout: float = 120.0,
    **fields: Any,
) -> bytes:
    """POST /v1/audio/speech (OpenAI-compatible); returns the encoded audio file."""
    body = {"model": fields.pop("model", "tts-1"), "input": text, "voice": voice, "response_format": response_format}
    body.update(fields)
    async with _client(url, api_key, timeout) as client:
        response = await client.post("/v1/audio/speech", json=body)
        response.raise_for_status()
        return response.content


async def list_voices(url: str, api_key: str | None = None, timeout: float = 30.0) -> Any:
    async with _client(url, api_key, timeout) as client:
        response = await client.get("/v1/voices")
        response.raise_for_status()
        return response.json()


async def register_voice(
    url: str,
    wav: bytes,
    voice_id: str | None = None,
    name: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
) -> Any:
    """POST /v1/voices (multipart reference audio + optional id/name)."""
    data = {k: v for k, v in (("id", voice_id), ("name", name)) if v}
    async with _client(url, api_key, timeout) as client:
        response = await client.post("/v1/voices", data=data, files={"file": ("reference.wav", wav, "audio/wav")})
        response.raise_for_status()
        return response.json()


async def delete_voice(url: str, voice_id: str, api_key: str | None = None, timeout: float = 30.0) -> None:
    async with _client(url, api_key, timeout) as client:
        response = await client.delete(f"/v1/voices/{voice_id}")
        response.raise_for_status()


__all__ = ["AudioFrame", "TTSStream", "Error", "speech", "list_voices", "register_voice", "delete_voice"]
