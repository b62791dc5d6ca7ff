"""The TTS session core: one client's synthesis requests, with no socket in sight.

Every transport (our `/v1/tts/stream`, the Wyoming server) is an adapter: it turns its wire
messages into the typed inputs below (`Configure`, `Synthesize`, `Text`, `Flush`, `End`, `Cancel`,
`RegisterVoice`) and hands them to `TTSCore.handle()`; the core answers through the adapter's
`CoreOutput` with the `services.common.protocol.tts` messages (`Ready`, `AudioChunk` + its audio
bytes, `SynthesisComplete`, `Cancelled`, `VoiceRegistered`, `Error`). So validation, limits
(text size, the per-connection budget, the engine's concurrency), metrics and logs are the same
on every transport.

Inputs carry the client's values as given (`Any`): the core validates them (services/tts/params.py,
the voice store), so a transport cannot skip a check. A refused input raises a `CodedError` from
`handle()`; the adapter's receive loop (services/common/ws_endpoint.py) sends it back as that
protocol's error, the session goes on. Errors that belong to a request running in the background
(synthesis failed, registration failed, `empty_text`) are sent by the core itself as `Error`.

Inside: a request is a queue of text pieces. `Synthesize` fills and closes it at once; `Text`
feeds an IncrementalText buffer that releases each sentence as soon as it is complete, so the
worker is already speaking sentence one while sentence two is still arriving. One worker per
session synthesizes the queued requests one after the other (the engine-wide limit is the
Scheduler's). `Cancel` sets the request's cancel token (the engine stops within a chunk) and
`Cancelled` goes out at once; all output is serialized under one lock, and no chunk of a
cancelled request is handed out after its `Cancelled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from services.common import logs, validate
from services.common.budget import Budget
from services.common.errors import CodedError
from services.common.protocol.base import Error, Message, ProtocolError
from services.common.protocol.tts import (
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

NO_VALUE: Any = None  # an input field the client did not send


# ---------------------------------------------------------------- inputs (transport → core)
@dataclass(frozen=True)
class Configure:
    """Session settings to change (any of SessionConfig's fields, as the client gave them)."""

    changes: Mapping[str, Any]


@dataclass(frozen=True)
class Synthesize:
    """One whole text. `options` holds the per-request knobs as given (exaggeration / emotion,
    cfg_weight, temperature, seed, chunk_size); absent ones come from the session config."""

    text: Any
    request_id: Any = NO_VALUE
    voice_id: Any = NO_VALUE
    streaming: Any = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Text:
    """A piece of incremental text: opens a request (or continues the open one)."""

    text: Any
    request_id: Any = NO_VALUE
    voice_id: Any = NO_VALUE


@dataclass(frozen=True)
class Flush:
    """Speak what the open incremental request holds, even an unfinished sentence."""

    request_id: Any = NO_VALUE


@dataclass(frozen=True)
class End:
    """The open incremental request has all its text."""

    request_id: Any = NO_VALUE


@dataclass(frozen=True)
class Cancel:
    """Stop one request (or, without an id, every running one) now."""

    request_id: Any = NO_VALUE


@dataclass(frozen=True)
class RegisterVoice:
    """A reference clip (already decoded from the transport's encoding) to register as a voice."""

    voice_id: str
    audio: bytes
    name: Any = NO_VALUE


Input = Configure | Synthesize | Text | Flush | End | Cancel | RegisterVoice


# ---------------------------------------------------------------- outputs (core → transport)
class CoreOutput(Protocol):
    """What an adapter implements. Called one at a time, in order. A transport that is gone
    just drops what it gets (the adapter closes the core when it notices)."""

    async def event(self, message: Message) -> None:
        """Ready, SynthesisComplete, Cancelled, VoiceRegistered or Error."""

    async def audio(self, chunk: AudioChunk, data: bytes) -> None:
        """One chunk: its description and its audio in the session's encoding and rate."""


# ---------------------------------------------------------------- a request
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


# a closing session waits this long for its tasks (cancelled) to end, then ends without them
CLOSE_WAIT_S = 5.0


# ---------------------------------------------------------------- the core
class TTSCore:
    def __init__(
        self,
        runtime: TTSRuntime,
        output: CoreOutput,
        session_id: str | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        self.rt = runtime
        self.cfg = runtime.config
        self.output = output
        self.session_id = session_id or uuid.uuid4().hex[:16]
        self.config = config or SessionConfig()
        self.requests: dict[str, Request] = {}  # not yet finished, by id
        self.queue: asyncio.Queue[Request] = asyncio.Queue()
        self.budget = Budget.from_config(self.cfg.common)  # MAX_BUFFERED_TEXT_CHARS / _AUDIO_SECS per connection
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._worker: asyncio.Task | None = None
        self.closed = False

    @property
    def busy(self) -> bool:
        """A request is queued or running (an idle timeout waits for it)."""
        return bool(self.requests)

    # ------------------------------------------------------------------ life
    async def open(self, send_ready: bool = True) -> None:
        self._worker = asyncio.create_task(self._work(), name=f"tts-worker-{self.session_id}")
        if send_ready:
            await self.send(self.ready())

    def ready(self) -> Ready:
        return Ready(session_id=self.session_id, **self.ready_fields())

    def ready_fields(self) -> dict[str, Any]:
        return {
            "sample_rate": self.config.sample_rate,
            "encoding": self.config.encoding,
            "engine": self.rt.engine.name,
            "model": self.rt.model,
        }

    async def close(self) -> None:
        """Cancel everything and stop the worker (the transport is gone or closing)."""
        self.closed = True
        for req in list(self.requests.values()):
            req.cancel.cancel()
            req.close()
        tasks = [t for t in (self._worker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: a failure of a closing session is not news
        if pending:  # e.g. waiting on an engine call that cannot be interrupted: the session ends anyway
            where = sorted({f"{f.f_code.co_name}:{f.f_lineno}" for t in pending for f in t.get_stack(limit=4)})
            logs.event(log, "session tasks still running at close", level=logging.WARNING,
                       session_id=self.session_id, tasks=len(pending), at=where)  # fmt: skip

    # ------------------------------------------------------------------ output
    async def send(self, message: Message) -> None:
        if hasattr(message, "session_id"):
            message.session_id = self.session_id
        async with self._lock:
            await self.output.event(message)

    async def report(self, error: CodedError, request_id: str | None = None) -> None:
        """An error event for `error` (counted by code). Adapters route refused inputs here."""
        metrics.ERRORS.labels(code=error.code).inc()
        await self.send(Error(code=error.code, message=error.message, fatal=error.fatal, request_id=request_id))

    async def _send_chunk(self, req: Request, chunk_id: int, data: bytes, samples: int, rate: int, enc: str) -> bool:
        chunk = AudioChunk(
            request_id=req.id,
            chunk_id=chunk_id,
            duration_ms=round(samples / rate * 1000.0, 3),
            sample_rate=rate,
            session_id=self.session_id,
            encoding=enc,
        )
        async with self._lock:  # the description and its audio are never split, nor sent after `cancelled`
            if req.cancel.cancelled:
                return False
            await self.output.audio(chunk, data)
        return True

    # ------------------------------------------------------------------ inputs
    async def handle(self, item: Input) -> None:
        """One input; raises a CodedError when it is refused (nothing of it was taken)."""
        await self._HANDLERS[type(item)](self, item)  # VoiceError, StoreUnavailable, ProtocolError: CodedErrors

    async def _configure(self, item: Configure) -> None:
        data, c = item.changes, self.config
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
        await self.send(self.ready())

    def _params(self, data: Mapping[str, Any]) -> SynthesisParams:
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

    def _new_id(self, request_id: Any) -> str:
        request_id = params.optional_str({"request_id": request_id}, "request_id") or uuid.uuid4().hex[:12]
        if request_id in self.requests:
            raise ProtocolError("duplicate_request_id", f"request {request_id!r} is still running")
        return request_id

    def _voice(self, voice_id: Any) -> str | None:
        voice_id = params.optional_str({"voice_id": voice_id}, "voice_id")
        if voice_id is not None:
            validate.text(voice_id, "voice_id")  # a lone surrogate is refused here, whatever the transport
        return voice_id or self.config.voice_id

    def _queued_chars(self) -> int:
        return sum(r.chars for r in self.requests.values())

    async def _synthesize(self, item: Synthesize) -> None:
        request_id = self._new_id(item.request_id)
        text = params.text(item.text, self.cfg.max_text_chars)
        validate.text(text)  # valid Unicode (our WS parser refuses surrogates already; others may not)
        self.budget.text(self._queued_chars(), len(text))  # queued text, all requests
        if not isinstance(item.streaming, bool):
            raise ProtocolError("bad_parameter", "streaming must be true or false")
        synth_params = self._params(item.options)
        conditionals = await self.rt.store.resolve(self._voice(item.voice_id))
        req = Request(request_id, conditionals, synth_params, streaming=item.streaming, incremental=False)
        req.chars = len(text)
        req.release(split_text(text, self.cfg.piece_max_chars))
        req.close()
        self._enqueue(req)

    def _open_incremental(self, request_id: str | None) -> Request | None:
        for req in reversed(list(self.requests.values())):
            if req.incremental and not req.closed and (request_id is None or req.id == request_id):
                return req
        return None

    async def _text(self, item: Text) -> None:
        text = item.text
        if not isinstance(text, str):
            raise ProtocolError("bad_text", "text must be a string")
        validate.text(text)
        request_id = params.optional_str({"request_id": item.request_id}, "request_id")
        req = self._open_incremental(request_id)
        if req is None:
            req_id = self._new_id(item.request_id)
            conditionals = await self.rt.store.resolve(self._voice(item.voice_id))
            req = Request(req_id, conditionals, self._params({}), streaming=True, incremental=True)
            req.buffer = IncrementalText(self.cfg.piece_max_chars)
            self._enqueue(req)
        if req.chars + len(text) > self.cfg.max_text_chars:
            raise ProtocolError(
                "text_too_long", f"request {req.id!r} would exceed {self.cfg.max_text_chars} characters; text ignored"
            )
        self.budget.text(self._queued_chars(), len(text))
        req.chars += len(text)
        req.release(req.buffer.feed(text))

    async def _flush(self, item: Flush) -> None:
        req = self._open_incremental(params.optional_str({"request_id": item.request_id}, "request_id"))
        if req is None:
            raise ProtocolError("no_request", "no incremental text request is open")
        req.release(req.buffer.flush())

    async def _end(self, item: End) -> None:
        req = self._open_incremental(params.optional_str({"request_id": item.request_id}, "request_id"))
        if req is None:
            raise ProtocolError("no_request", "no incremental text request is open")
        req.release(req.buffer.flush())
        req.close()
        if req.released == 0:  # nothing to say: no synthesis_complete, just the error
            req.cancel.cancel()
            self._finish(req)
            await self.report(ProtocolError("empty_text", "the request ended without any text to speak"), req.id)

    async def _cancel(self, item: Cancel) -> None:
        request_id = params.optional_str({"request_id": item.request_id}, "request_id")
        targets = [r for r in self.requests.values() if request_id is None or r.id == request_id]
        if not targets:
            what = f"request {request_id!r}" if request_id else "request"
            raise ProtocolError("nothing_to_cancel", f"no {what} is running")
        for req in targets:
            async with self._lock:
                req.cancel.cancel()
            req.close()
            self._finish(req)
            metrics.REQUESTS.labels(outcome="cancelled").inc()
            await self.send(Cancelled(request_id=req.id))

    async def _register_voice(self, item: RegisterVoice) -> None:
        name = params.optional_str({"name": item.name}, "name")
        task = asyncio.create_task(self._register(item.voice_id, name, item.audio))  # conditionals take a while
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register(self, voice_id: str, name: str | None, audio: bytes) -> None:
        try:
            meta = await self.rt.store.register(voice_id, name, audio)
        except VoiceError as exc:
            await self.report(exc)
            return
        except StoreUnavailable as exc:
            await self.report(CodedError(exc.code, f"voice registration failed: {exc}"))
            return
        except Exception as exc:
            logs.event(log, "voice registration failed", level=logging.ERROR, error=logs.safe_exc(exc))
            await self.report(CodedError("registration_failed", f"voice registration failed: {type(exc).__name__}"))
            return
        logs.event(log, "voice registered", session_id=self.session_id, voice_id=meta.id)
        await self.send(VoiceRegistered(voice_id=meta.id))

    _HANDLERS = {
        Configure: _configure,
        Synthesize: _synthesize,
        Text: _text,
        Flush: _flush,
        End: _end,
        Cancel: _cancel,
        RegisterVoice: _register_voice,
    }

    # ------------------------------------------------------------------ worker
    def _enqueue(self, req: Request) -> None:
        self.requests[req.id] = req
        self.queue.put_nowait(req)

    def _finish(self, req: Request) -> None:
        req.finished = True
        self.requests.pop(req.id, None)

    async def _work(self) -> None:
        while True:
            req = await self.queue.get()
            if req.cancel.cancelled or req.finished:
                continue
            try:
                await self._run(req)
            finally:
                if not req.cancel.cancelled:
                    self._finish(req)

    async def _run(self, req: Request) -> None:
        rate, enc = self.config.sample_rate, self.config.encoding
        output = AudioOutput(self.rt.engine.sample_rate, rate, enc)
        engine_rate = self.rt.engine.sample_rate
        stats = RequestStats()
        chunk_id = 0
        held: list[np.ndarray] = []
        try:
            async with contextlib.aclosing(
                speak(self.rt.synth, req.iter_pieces(), req.conditionals, req.params, req.cancel, stats)
            ) as chunks:
                async for audio in chunks:
                    if not req.streaming:
                        self.budget.audio(sum(map(len, held)) / engine_rate, len(audio) / engine_rate, "held audio")
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
        except Exception as exc:
            if self.closed:
                raise
            code = exc.code if isinstance(exc, (EngineError, CodedError)) else "synthesis_failed"
            logs.event(
                log, "synthesis failed", level=logging.ERROR, session_id=self.session_id, error=logs.safe_exc(exc)
            )
            metrics.REQUESTS.labels(outcome="error").inc()
            message = exc.message if isinstance(exc, CodedError) else f"synthesis failed: {type(exc).__name__}"
            await self.report(CodedError(code, message), req.id)
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
