"""One `/v1/asr/stream` WebSocket session.

Data flow: binary frame → decode (services.common.audio) → StreamResampler to 16 kHz → 32 ms
frames → Silero VAD → TurnTaker actions → events. The VAD/turn path runs in order on the sample
clock (the session awaits each Smart Turn decision before the next frame, so the same audio
always gives the same turns); transcription runs on the shared Transcriber, off the event loop.

Every event goes through one ordered outbox: a final is queued as a task at the moment its turn
ends, and later events wait behind it, so a client always sees speech_start … speech_end → final
of turn N before anything of turn N+1. Partials are best effort: at most one in flight per
session, skipped when the engine is busy, and dropped if their turn has ended meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from services.common import logs
from services.common.audio import AudioFormatError, StreamResampler, decode
from services.common.protocol.asr import (
    EndOfTurn,
    Final,
    Partial,
    Ready,
    SpeechEnd,
    SpeechStart,
    StreamConfig,
    Word,
    parse_config,
)
from services.common.protocol.base import Error, Message, ProtocolError, check_fields, parse_json_object
from services.common.server import SessionRegistry

from . import metrics
from .config import ASRConfig
from .engines import Engines
from .transcriber import SAMPLE_RATE, Request, Transcript, clamp
from .turn_taking import Action, TurnTaker
from .vad import FRAME_SAMPLES

log = logging.getLogger("voice.asr.session")

CLIENT_MESSAGES = "config, flush, end, keepalive"
MAX_PENDING_FINALS = 3  # a client streaming faster than the engine keeps up waits (TCP backpressure)


class _Close:
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class StreamSession:
    def __init__(self, ws: WebSocket, config: ASRConfig, engines: Engines, registry: SessionRegistry) -> None:
        self.ws = ws
        self.config = config
        self.engines = engines
        self.registry = registry
        self.id = "asr_" + uuid.uuid4().hex[:16]
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.tasks: set[asyncio.Task] = set()
        self.audio_seen = False
        self.ending = False
        self.finals = 0
        self.sender: asyncio.Task | None = None
        self.pending_finals: collections.deque[asyncio.Task] = collections.deque()
        self.lock = asyncio.Lock()  # audio intake vs. a shutdown arriving from another task
        self._apply(config.stream_defaults)

    # ------------------------------------------------------------ setup
    def _apply(self, stream: StreamConfig) -> None:
        self.stream = stream
        self.resampler = StreamResampler(stream.sample_rate, SAMPLE_RATE)
        self.vad = self.engines.vad.stream()
        self.turns = TurnTaker(stream.turn_detection, self.config.vad_threshold, self.config.max_turn_s)
        self.pending = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet a whole VAD frame
        self.clock = 0  # 16 kHz samples through the VAD: the stream's sample clock
        self.recent: list[np.ndarray] = []  # audio of the open turn (or the pre-speech pad while idle)
        self.recent_start = 0
        self.turn_id = 0
        self.turn_open = False
        self.partial_mark = 0
        self.partial_busy = False
        self._speculative: asyncio.Task | None = None  # the final's transcription, started at check_turn

    def effective_config(self) -> dict[str, Any]:
        data = self.stream.to_dict()
        data["model"] = self.config.model_name
        return data

    @property
    def now(self) -> float:
        return self.clock / SAMPLE_RATE

    # ------------------------------------------------------------ run
    async def run(self) -> None:
        """The session after accept(); returns when the socket is closed."""
        self.registry.add(self.id, self.shutdown)
        sender = self.sender = asyncio.create_task(self._send_loop())
        logs.event(log, "session start", session_id=self.id)
        self._emit(Ready(session_id=self.id, config=self.effective_config()))
        try:
            await self._receive_loop()
        finally:
            self.registry.remove(self.id)
            if not sender.done():
                # the client went away: nothing left to deliver to
                sender.cancel()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(sender, *self.tasks, return_exceptions=True)
            logs.event(log, "session end", session_id=self.id, finals=self.finals, audio_s=round(self.now, 3))

    async def _receive_loop(self) -> None:
        idle = self.config.common.idle_timeout_s
        timed_out = False
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=idle)
            except asyncio.TimeoutError:
                if timed_out or self.ending:
                    return  # the client answers nothing, not even our close
                timed_out = True
                await self._idle_timeout(idle)
                continue
            except RuntimeError:  # receive after disconnect
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._on_audio(message["bytes"])
            elif message.get("text") is not None:
                await self._on_text(message["text"])

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, _Close):
                # errors queued while the last final was being made (e.g. audio after `end`) still go out
                while not self.outbox.empty():
                    late = self.outbox.get_nowait()
                    if isinstance(late, Message):
                        with contextlib.suppress(Exception):
                            await self.ws.send_text(late.to_json())
                with contextlib.suppress(Exception):
                    await self.ws.close(code=item.code, reason=item.reason)
                return
            if isinstance(item, tuple):
                task, decided_at = item
                message = await task
                if isinstance(message, Final):
                    metrics.final_latency.observe(time.perf_counter() - decided_at)
                    metrics.finals.labels(message.end_of_turn.reason).inc()
                    self.finals += 1
            else:
                message = item
            try:
                await self.ws.send_text(message.to_json())
            except Exception:
                return  # the socket is gone; run() cleans up

    def _emit(self, message: Message) -> None:
        self.outbox.put_nowait(message)

    def _error(self, code: str, message: str, fatal: bool = False) -> None:
        metrics.errors.labels(code).inc()
        logs.event(log, "client error", logging.INFO, session_id=self.id, code=code)
        self._emit(Error(code=code, message=message, fatal=fatal, session_id=self.id))

    # ------------------------------------------------------------ client messages
    async def _on_text(self, text: str) -> None:
        if len(text.encode()) > self.config.common.max_frame_bytes:
            self._error("frame_too_large", f"text message over MAX_FRAME_BYTES ({self.config.common.max_frame_bytes})")
            return
        try:
            data = parse_json_object(text)
            kind = data["type"]
            if kind == "config":
                self._on_config(data)
            elif kind in ("flush", "end", "keepalive"):
                check_fields(data, set(), kind)
                if kind == "flush":
                    async with self.lock:
                        await self._finish_turn("flush")
                elif kind == "end":
                    await self._end()
            else:
                raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected one of {CLIENT_MESSAGES}")
        except ProtocolError as exc:
            self._error(exc.code, exc.message)

    def _on_config(self, data: dict[str, Any]) -> None:
        if self.ending:
            raise ProtocolError("ended", "the session is ending; config ignored")
        if self.audio_seen:
            raise ProtocolError(
                "config_too_late", "config must come before the first audio frame; the current config stays"
            )
        self._apply(parse_config(data, defaults=self.config.stream_defaults))
        self._emit(Ready(session_id=self.id, config=self.effective_config()))

    async def _on_audio(self, data: bytes) -> None:
        if self.ending:
            self._error("ended", "audio after 'end' is ignored: the session is closing")
            return
        if len(data) > self.config.common.max_frame_bytes:
            self._error(
                "frame_too_large",
                f"audio frame of {len(data)} bytes is over MAX_FRAME_BYTES ({self.config.common.max_frame_bytes})",
            )
            return
        if not data:
            self._error("empty_frame", "empty audio frame ignored")
            return
        try:
            samples = decode(data, self.stream.encoding)
        except AudioFormatError as exc:
            self._error(exc.code, exc.message + "; frame ignored")
            return
        self.audio_seen = True
        metrics.audio_seconds.labels("stream").inc(len(samples) / self.stream.sample_rate)
        await self._wait_for_engine()
        async with self.lock:
            if not self.ending:
                await self._feed(self.resampler.process(samples))

    async def _wait_for_engine(self) -> None:
        """Audio much faster than real time piles up finals; past a few, stop reading until the
        oldest is done, so memory stays bounded and the socket pushes back on the client."""
        while self.pending_finals and self.pending_finals[0].done():
            self.pending_finals.popleft()
        while len(self.pending_finals) >= MAX_PENDING_FINALS:
            await asyncio.wait({self.pending_finals.popleft()})

    async def _idle_timeout(self, idle: float) -> None:
        self._error("idle_timeout", f"no message for {idle:g} s; closing", fatal=True)
        await self._close_stream("end", 1000, "idle timeout")

    async def _end(self) -> None:
        await self._close_stream("end", 1000, "end of stream")

    async def shutdown(self) -> None:
        """Server shutdown: finish the open turn, deliver its final, close with 1001."""
        if not self.ending:
            await self._close_stream("end", 1001, "server shutting down")
        if self.sender is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self.sender)  # until the final and the close are out

    async def _close_stream(self, reason: str, code: int, close_reason: str) -> None:
        async with self.lock:
            if self.ending:
                return
            self.ending = True
            await self._drain_and_finish(reason)
        self.outbox.put_nowait(_Close(code, close_reason))

    async def _drain_and_finish(self, reason: str) -> None:
        tail = self.resampler.flush()
        await self._feed(tail, force=True)
        if len(self.pending):  # less than one VAD frame left: part of the turn, never VAD'd
            self._keep(self.pending)
            self.clock += len(self.pending)
            self.pending = np.zeros(0, dtype=np.float32)
        await self._finish_turn(reason)

    # ------------------------------------------------------------ audio → VAD → turns
    async def _feed(self, audio: np.ndarray, force: bool = False) -> None:
        self.pending = np.concatenate([self.pending, audio]) if len(self.pending) else np.asarray(audio, np.float32)
        whole = len(self.pending) // FRAME_SAMPLES * FRAME_SAMPLES
        if not whole:
            return
        frames, self.pending = self.pending[:whole], self.pending[whole:]
        probs = await self.engines.vad_probabilities(self.vad, frames)
        for i, prob in enumerate(probs):
            if self.ending and not force:
                return  # shutdown raced with this frame batch: the turn is already closed
            self._keep(frames[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
            self.clock += FRAME_SAMPLES
            await self._act(self.turns.frame(prob, self.now))
            if not self.turns.in_turn:
                self._trim_idle()
        self._maybe_partial()

    def _keep(self, frame: np.ndarray) -> None:
        self.recent.append(frame)

    def _trim_idle(self) -> None:
        """While nobody speaks keep only the pre-speech pad (plus the speech-start frames)."""
        keep = int((self.config.pre_speech_pad_s + 0.2) * SAMPLE_RATE)
        total = sum(len(x) for x in self.recent)
        while self.recent and total - len(self.recent[0]) >= keep:
            total -= len(self.recent[0])
            self.recent_start += len(self.recent.pop(0))

    def _turn_audio(self, turn_start: float) -> tuple[np.ndarray, float]:
        """Audio from the pre-speech pad before `turn_start` to now, and its start time."""
        want = max(0, int(round((turn_start - self.config.pre_speech_pad_s) * SAMPLE_RATE)))
        first = max(want, self.recent_start)
        audio = np.concatenate(self.recent) if self.recent else np.zeros(0, dtype=np.float32)
        return audio[first - self.recent_start :], first / SAMPLE_RATE

    async def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if action.kind == "speech_start":
                if not self.turn_open:
                    self.turn_open = True
                    self.turn_id += 1
                    self.partial_mark = self.clock
                self._emit(SpeechStart(session_id=self.id, timestamp=action.timestamp))
            elif action.kind == "speech_end":
                self._emit(SpeechEnd(session_id=self.id, timestamp=action.timestamp))
            elif action.kind == "check_turn":
                await self._check_turn()
            elif action.kind == "finalize":
                self._finalize(action)

    async def _check_turn(self) -> None:
        """Smart Turn on the turn so far. The final's transcription starts at the same moment
        (speculatively, on the very audio a 'complete' answer would finalize), so a complete turn
        costs max(Smart Turn, Whisper) instead of their sum; an 'incomplete' answer discards it."""
        audio, _ = self._turn_audio(self.turns.turn_start or 0.0)
        speculative = asyncio.create_task(self._transcribe_final(audio))
        self.tasks.add(speculative)
        speculative.add_done_callback(self.tasks.discard)
        try:
            prob = await self.engines.turn_probability(audio)
            actions = self.turns.turn_probability(prob, self.now)
        except BaseException:
            speculative.cancel()
            raise
        if any(a.kind == "finalize" for a in actions):
            self._speculative = speculative
        else:
            speculative.cancel()  # still queued: never runs; already running: result dropped
        await self._act(actions)

    async def _finish_turn(self, reason: str) -> None:
        await self._act(self.turns.force(reason, self.now))

    # ------------------------------------------------------------ finals and partials
    def _finalize(self, action: Action) -> None:
        audio, offset = self._turn_audio(action.turn_start or 0.0)
        self.recent, self.recent_start = [], self.clock
        self.turn_open = False
        transcript, self._speculative = self._speculative, None
        if transcript is None:
            transcript = asyncio.create_task(self._transcribe_final(audio))
            self.tasks.add(transcript)
            transcript.add_done_callback(self.tasks.discard)
        task = asyncio.create_task(self._final(transcript, offset, len(audio), action))
        self.pending_finals.append(task)
        self.outbox.put_nowait((task, time.perf_counter()))

    async def _transcribe_final(self, audio: np.ndarray) -> Transcript:
        request = Request(audio, "final", language=self.stream.language, word_timestamps=self.stream.word_timestamps)
        return await self.engines.transcriber.transcribe(request)

    async def _final(self, transcript: asyncio.Task, offset: float, samples: int, action: Action) -> Message:
        start = action.turn_start or 0.0
        end = max(start, min(action.speech_end or action.timestamp, offset + samples / SAMPLE_RATE))
        try:
            result = await transcript
        except Exception as exc:
            log.exception("final transcription failed", extra={"fields": {"session_id": self.id}})
            return Error(
                code="transcription_failed", message=f"transcription failed: {type(exc).__name__}", session_id=self.id
            )
        words = [
            Word(
                word=w.word.strip(),
                start=round(clamp(w.start + offset, start, end), 3),
                end=round(clamp(w.end + offset, start, end), 3),
                confidence=round(w.probability, 4),
            )
            for w in result.words
            if w.word.strip()
        ]
        logs.event(log, "final", session_id=self.id, reason=action.reason, text=logs.content(result.text))
        return Final(
            session_id=self.id,
            text=result.text,
            start=round(start, 3),
            end=round(end, 3),
            words=words if self.stream.word_timestamps else [],
            language=result.language,
            end_of_turn=EndOfTurn(
                reason=action.reason or "flush",
                probability=None if action.probability is None else round(action.probability, 4),
            ),
        )

    def _maybe_partial(self) -> None:
        if not (self.stream.partials and self.turn_open and self.turns.state == "speaking") or self.partial_busy:
            return
        if self.turns.silence_s > 0:
            return  # the user may be stopping: keep the engine free for the final
        if self.clock - self.partial_mark < self.config.partial_interval_s * SAMPLE_RATE:
            return
        self.partial_mark = self.clock
        if not self.engines.transcriber.accepts_partial():
            metrics.partials_dropped.inc()
            return
        audio, _ = self._turn_audio(self.turns.turn_start or 0.0)
        self.partial_busy = True
        task = asyncio.create_task(self._partial(audio, self.turn_id, round(self.now, 3)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _partial(self, audio: np.ndarray, turn_id: int, timestamp: float) -> None:
        try:
            result = await self.engines.transcriber.transcribe(Request(audio, "partial", language=self.stream.language))
        except Exception:
            log.exception("partial transcription failed", extra={"fields": {"session_id": self.id}})
            return
        finally:
            self.partial_busy = False
        # only while the user speaks: after speech_end the next thing a client sees is the final
        speaking = self.turns.state == "speaking"
        if self.turn_open and self.turn_id == turn_id and speaking and not self.ending and result.text:
            self._emit(
                Partial(
                    session_id=self.id, text=result.text, confidence=round(result.confidence, 4), timestamp=timestamp
                )
            )
