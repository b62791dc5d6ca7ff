"""One `/v1/tts/stream` WebSocket session (protocol in docs/tts.md).

Two loops: the receiver parses client messages and queues requests; the worker synthesizes the
queued requests one after the other, sending `audio_chunk` + one binary frame per chunk. A
request is a queue of text pieces: `synthesize` fills and closes it at once; `text` messages
feed an IncrementalText buffer that releases each sentence as soon as it is complete, so the
worker is already speaking sentence one while sentence two is still arriving. `cancel` sets the
request's cancel token (the engine stops within a chunk) and `cancelled` is sent at once; under
the send lock no chunk of a cancelled request goes out after it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common import logs
from services.common.budget import Budget
from services.common.errors import CodedError
from services.common.protocol.base import Error, ProtocolError, check_fields, parse_json_object
from services.common.protocol.tts import (
    CLIENT_FIELDS,
    AudioChunk,
    Cancelled,
    Ready,
    SessionConfig,
    SynthesisComplete,
    VoiceRegistered,
)
from services.common.text import IncrementalText, split_text

from . import metrics, params
from .engines.base import CancelToken, EngineError, SynthesisParams
from .output import AudioOutput
from .runtime import TTSRuntime
from .speak import RequestStats, speak
from .voices.backends import StoreUnavailable
from .voices.store import VoiceError

log = logging.getLogger("voice.tts.session")


@dataclass
class Request:
    id: str
    conditionals: object
    params: SynthesisParams
    streaming: bool
    incremental: bool
    buffer: IncrementalText | None = None
    pieces: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancel: CancelToken = field(default_factory=CancelToken)
    closed: bool = False
    chars: int = 0
    released: int = 0
    finished: bool = False

    def release(self, texts: list[str]) -> None:
        for text in texts:
            self.released += 1
            self.pieces.put_nowait(text)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pieces.put_nowait(None)

    async def iter_pieces(self) -> AsyncIterator[str]:
        while True:
            piece = await self.pieces.get()
            if piece is None or self.cancel.cancelled:
                return
            yield piece


class TTSSession:
    def __init__(self, ws: WebSocket, runtime: TTSRuntime) -> None:
        self.ws = ws
        self.rt = runtime
        self.cfg = runtime.config
        self.session_id = uuid.uuid4().hex[:16]
        self.config = SessionConfig()
        self.requests: dict[str, Request] = {}  # not yet finished, by id
        self.queue: asyncio.Queue[Request] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self.closed = False
        self.budget = Budget.from_config(self.cfg.common)  # MAX_BUFFERED_TEXT_CHARS / _AUDIO_SECS per connection

    # ------------------------------------------------------------------ sending
    async def send(self, message) -> None:
        if hasattr(message, "session_id"):
            message.session_id = self.session_id
        async with self._send_lock:
            await self.ws.send_text(message.to_json())

    async def send_error(self, code: str, message: str, request_id: str | None = None, fatal: bool = False) -> None:
        metrics.ERRORS.labels(code=code).inc()
        await self.send(Error(code=code, message=message, fatal=fatal, request_id=request_id))

    async def _send_chunk(self, req: Request, chunk_id: int, data: bytes, samples: int, rate: int, enc: str) -> bool:
        event = AudioChunk(
            request_id=req.id,
            chunk_id=chunk_id,
            duration_ms=round(samples / rate * 1000.0, 3),
            sample_rate=rate,
            session_id=self.session_id,
            encoding=enc,
        )
        async with self._send_lock:  # the event and its binary frame are never split, nor sent after `cancelled`
            if req.cancel.cancelled:
                return False
            await self.ws.send_text(event.to_json())
            await self.ws.send_bytes(data)
        return True

    async def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        await self.ws.accept()
        metrics.ACTIVE_STREAMS.inc()
        worker = asyncio.create_task(self._worker())
        try:
            await self.send(Ready(session_id=self.session_id, **self._ready_fields()))
            while True:
                try:
                    msg = await asyncio.wait_for(self.ws.receive(), timeout=self.cfg.common.idle_timeout_s)
                except asyncio.TimeoutError:
                    if self.requests:
                        continue
                    await self.close(1000, "idle timeout")
                    break
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("bytes") is not None:
                    await self.send_error("unexpected_binary", "this stream takes JSON text messages only")
                    continue
                text = msg.get("text")
                if text is None:
                    continue
                if len(text.encode()) > self.cfg.common.max_frame_bytes:
                    await self.send_error(
                        "frame_too_large", f"message larger than {self.cfg.common.max_frame_bytes} bytes"
                    )
                    continue
                try:
                    await self._dispatch(parse_json_object(text))
                except ProtocolError as exc:
                    await self.send_error(exc.code, exc.message)
                except VoiceError as exc:
                    await self.send_error(exc.code, exc.message)
                except StoreUnavailable as exc:
                    await self.send_error(exc.code, str(exc))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.closed = True
            for req in list(self.requests.values()):
                req.cancel.cancel()
                req.close()
            worker.cancel()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(BaseException):
                await worker
            metrics.ACTIVE_STREAMS.dec()

    def _ready_fields(self) -> dict:
        engine = self.rt.engine
        return {
            "sample_rate": self.config.sample_rate,
            "encoding": self.config.encoding,
            "engine": engine.name,
            "model": self.rt.model,
        }

    async def _dispatch(self, data: dict) -> None:
        kind = data["type"]
        if kind not in CLIENT_FIELDS:
            raise ProtocolError("unknown_type", f"unknown message type {kind!r}")
        check_fields(data, CLIENT_FIELDS[kind], kind)
        handler = getattr(self, "_on_" + kind)
        await handler(data)

    # ------------------------------------------------------------------ handlers
    async def _on_config(self, data: dict) -> None:
        c = self.config
        new = SessionConfig(
            voice_id=params.optional_str(data, "voice_id") if "voice_id" in data else c.voice_id,
            sample_rate=params.sample_rate(data["sample_rate"]) if "sample_rate" in data else c.sample_rate,
            encoding=params.encoding(data["encoding"]) if "encoding" in data else c.encoding,
            exaggeration=params.number(data, "exaggeration", c.exaggeration),
            cfg_weight=params.number(data, "cfg_weight", c.cfg_weight),
            temperature=params.number(data, "temperature", c.temperature),
            seed=params.seed(data, c.seed),
        )
        if new.voice_id is not None:
            await self.rt.store.resolve(new.voice_id)  # unknown voice → error now, config unchanged
        self.config = new
        await self.send(Ready(session_id=self.session_id, **self._ready_fields()))

    def _params(self, data: dict) -> SynthesisParams:
        c = self.config
        exaggeration = params.number(data, "exaggeration", c.exaggeration)
        if "emotion" in data and "exaggeration" not in data:
            exaggeration = params.number(data, "emotion", c.exaggeration)
        return SynthesisParams(
            exaggeration=exaggeration,
            cfg_weight=params.number(data, "cfg_weight", c.cfg_weight),
            temperature=params.number(data, "temperature", c.temperature),
            seed=params.seed(data, c.seed),
            chunk_tokens=params.chunk_size(data),
        )

    def _new_id(self, data: dict) -> str:
        request_id = params.optional_str(data, "request_id") or uuid.uuid4().hex[:12]
        if request_id in self.requests:
            raise ProtocolError("duplicate_request_id", f"request {request_id!r} is still running")
        return request_id

    async def _on_synthesize(self, data: dict) -> None:
        request_id = self._new_id(data)
        text = params.text(data.get("text"), self.cfg.max_text_chars)
        self.budget.text(sum(r.chars for r in self.requests.values()), len(text))  # queued text, all requests
        streaming = data.get("streaming", True)
        if not isinstance(streaming, bool):
            raise ProtocolError("bad_parameter", "streaming must be true or false")
        synth_params = self._params(data)
        voice_id = params.optional_str(data, "voice_id") or self.config.voice_id
        conditionals = await self.rt.store.resolve(voice_id)
        req = Request(request_id, conditionals, synth_params, streaming=streaming, incremental=False, chars=len(text))
        req.release(split_text(text, self.cfg.piece_max_chars))
        req.close()
        self._enqueue(req)

    def _open_incremental(self, request_id: str | None) -> Request | None:
        for req in reversed(list(self.requests.values())):
            if req.incremental and not req.closed and (request_id is None or req.id == request_id):
                return req
        return None

    async def _on_text(self, data: dict) -> None:
        text = data.get("text")
        if not isinstance(text, str):
            raise ProtocolError("bad_text", "text must be a string")
        request_id = params.optional_str(data, "request_id")
        req = self._open_incremental(request_id)
        if req is None:
            req_id = self._new_id(data)
            voice_id = params.optional_str(data, "voice_id") or self.config.voice_id
            conditionals = await self.rt.store.resolve(voice_id)
            req = Request(req_id, conditionals, self._params({}), streaming=True, incremental=True)
            req.buffer = IncrementalText(self.cfg.piece_max_chars)
            self._enqueue(req)
        if req.chars + len(text) > self.cfg.max_text_chars:
            raise ProtocolError(
                "text_too_long", f"request {req.id!r} would exceed {self.cfg.max_text_chars} characters; text ignored"
            )
        self.budget.text(sum(r.chars for r in self.requests.values()), len(text))
        req.chars += len(text)
        req.release(req.buffer.feed(text))

    async def _on_flush(self, data: dict) -> None:
        req = self._open_incremental(params.optional_str(data, "request_id"))
        if req is None:
            raise ProtocolError("no_request", "no incremental text request is open")
        req.release(req.buffer.flush())

    async def _on_end(self, data: dict) -> None:
        request_id = params.optional_str(data, "request_id")
        req = self._open_incremental(request_id)
        if req is None:
            raise ProtocolError("no_request", "no incremental text request is open")
        req.release(req.buffer.flush())
        req.close()
        if req.released == 0:  # nothing to say: no synthesis_complete, just the error
            req.cancel.cancel()
            self._finish(req)
            await self.send_error("empty_text", "the request ended without any text to speak", request_id=req.id)

    async def _on_cancel(self, data: dict) -> None:
        request_id = params.optional_str(data, "request_id")
        targets = [r for r in self.requests.values() if request_id is None or r.id == request_id]
        if not targets:
            what = f"request {request_id!r}" if request_id else "request"
            raise ProtocolError("nothing_to_cancel", f"no {what} is running")
        for req in targets:
            async with self._send_lock:
                req.cancel.cancel()
            req.close()
            self._finish(req)
            metrics.REQUESTS.labels(outcome="cancelled").inc()
            await self.send(Cancelled(request_id=req.id))

    async def _on_register_voice(self, data: dict) -> None:
        voice_id = data.get("voice_id")
        if not isinstance(voice_id, str) or not voice_id:
            raise ProtocolError("bad_voice_id", "register_voice needs a voice_id string")
        encoded = data.get("reference_audio")
        if not isinstance(encoded, str) or not encoded:
            raise ProtocolError("invalid_base64", "reference_audio must be a base64 string")
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("invalid_base64", "reference_audio is not valid base64") from None
        name = params.optional_str(data, "name")
        task = asyncio.create_task(self._register(voice_id, name, audio))  # computing conditionals takes a while
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register(self, voice_id: str, name: str | None, audio: bytes) -> None:
        try:
            meta = await self.rt.store.register(voice_id, name, audio)
        except VoiceError as exc:
            await self.send_error(exc.code, exc.message)
            return
        except StoreUnavailable as exc:
            await self.send_error(exc.code, f"voice registration failed: {exc}")
            return
        except Exception as exc:
            logs.event(log, "voice registration failed", level=logging.ERROR, error=repr(exc))
            await self.send_error("registration_failed", f"voice registration failed: {type(exc).__name__}")
            return
        logs.event(log, "voice registered", session_id=self.session_id, voice_id=meta.id)
        await self.send(VoiceRegistered(voice_id=meta.id))

    # ------------------------------------------------------------------ worker
    def _enqueue(self, req: Request) -> None:
        self.requests[req.id] = req
        self.queue.put_nowait(req)

    def _finish(self, req: Request) -> None:
        req.finished = True
        self.requests.pop(req.id, None)

    async def _worker(self) -> None:
        while True:
            req = await self.queue.get()
            if req.cancel.cancelled or req.finished:
                continue
            try:
                await self._run(req)
            except (WebSocketDisconnect, RuntimeError):
                return
            finally:
                if not req.cancel.cancelled:
                    self._finish(req)

    async def _run(self, req: Request) -> None:
        rate, enc = self.config.sample_rate, self.config.encoding
        output = AudioOutput(self.rt.engine.sample_rate, rate, enc)
        output_rate = self.rt.engine.sample_rate
        stats = RequestStats()
        chunk_id = 0
        held: list[np.ndarray] = []
        try:
            async with contextlib.aclosing(
                speak(self.rt.synth, req.iter_pieces(), req.conditionals, req.params, req.cancel, stats)
            ) as chunks:
                async for audio in chunks:
                    if not req.streaming:
                        self.budget.audio(sum(map(len, held)) / output_rate, len(audio) / output_rate, "held audio")
                        held.append(audio)
                        continue
                    data, n = output.convert(audio)
                    if n and await self._send_chunk(req, chunk_id, data, n, rate, enc):
                        chunk_id += 1
            if held:
                data, n = output.convert(np.concatenate(held))
                tail, m = output.flush()
                if n + m and await self._send_chunk(req, chunk_id, data + tail, n + m, rate, enc):
                    chunk_id += 1
            else:
                data, n = output.flush()
                if n and await self._send_chunk(req, chunk_id, data, n, rate, enc):
                    chunk_id += 1
        except (EngineError, Exception) as exc:
            if isinstance(exc, (WebSocketDisconnect, RuntimeError)) and self.closed:
                raise
            code = exc.code if isinstance(exc, (EngineError, CodedError)) else "synthesis_failed"
            logs.event(log, "synthesis failed", level=logging.ERROR, session_id=self.session_id, error=repr(exc))
            metrics.REQUESTS.labels(outcome="error").inc()
            message = exc.message if isinstance(exc, CodedError) else f"synthesis failed: {type(exc).__name__}"
            await self.send_error(code, message, request_id=req.id)
            return
        if req.cancel.cancelled:
            return
        metrics.REQUESTS.labels(outcome="complete").inc()
        await self.send(
            SynthesisComplete(
                request_id=req.id,
                total_duration_ms=round(output.samples_out / rate * 1000.0, 3),
                chunks_sent=chunk_id,
                first_audio_ms=None if stats.first_audio_ms is None else round(stats.first_audio_ms, 1),
            )
        )
