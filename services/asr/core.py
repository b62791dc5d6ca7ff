"""The ASR session core: one stream's turn taking and transcription, with no socket in sight.

Every transport (our `/v1/asr/stream`, OpenAI Realtime, Wyoming) is an adapter: it turns its
wire messages into the typed inputs below (`Configure`, `AudioIn`, `Flush`, `End`, `Clear`),
and turns the core's typed outputs (the `services.common.protocol.asr` messages, plus
`TurnCommitted` and `Closed`) into its wire messages through the `send` / `close` callables it
passes to `open()`. So turn detection, limits, metrics and logs are the same on every transport.

Data flow: audio bytes → decode (services.common.audio) → StreamResampler to 16 kHz → 32 ms
frames → Silero VAD → TurnTaker actions → events. The VAD/turn path runs in order on the sample
clock (the core awaits each Smart Turn decision before the next frame, so the same audio always
gives the same turns); transcription runs on the shared Transcriber, off the event loop.

Every event goes through one ordered outbox: a final is queued as a task at the moment its turn
ends, and later events wait behind it, so a transport always sees speech_start … speech_end →
final of turn N before anything of turn N+1. Partials are best effort: at most one in flight per
session, skipped when the engine is busy, and dropped if their turn has ended meanwhile.

Client mistakes are raised as `ProtocolError` (a CodedError); the adapter's receive loop
(services.common.ws_endpoint) hands them back to `report()`, which queues an `Error` in order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from services.common import logs
from services.common.audio import AudioFormatError, StreamResampler, decode
from services.common.budget import Budget
from services.common.errors import CodedError
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
from services.common.protocol.base import Error, Message, ProtocolError
from services.common.server import SessionRegistry

from . import metrics
from .config import ASRConfig
from .context import PreviousTurn
from .endpointing import Endpointer, endpointing
from .engines import Engines, Kind
from .intake import Intake
from .ring import AudioRing
from .transcriber import SAMPLE_RATE, Request, Transcript, clamp
from .turn_taking import Action, ActionKind, TurnPhase, TurnTaker
from .vad import FRAME_SAMPLES

log = logging.getLogger("voice.asr.session")

MAX_PENDING_FINALS = 3  # a client streaming faster than the engine keeps up waits (transport backpressure)


class SessionState(StrEnum):
    OPEN = "open"  # taking config and audio
    ENDING = "ending"  # end / idle / shutdown: the open turn is being finalized, nothing more is taken
    CLOSED = "closed"  # the transport is gone


class EndReason(StrEnum):
    """Why a turn ended when a client or the server forces it (the TurnTaker adds its own)."""

    FLUSH = "flush"
    END = "end"


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Configure:
    """A new stream config, before the first audio. The two optional knobs override the
    process defaults for this session (OpenAI `server_vad.threshold` / `prefix_padding_ms`)."""

    config: StreamConfig
    vad_threshold: float | None = None
    pre_speech_pad_s: float | None = None
    prompt: str | None = None  # Whisper's initial prompt for finals (OpenAI `transcription.prompt`)


@dataclass(frozen=True)
class AudioIn:
    """Raw audio bytes in the session's encoding and sample rate."""

    data: bytes


@dataclass(frozen=True)
class Flush:
    """End the open turn now (our `flush`, OpenAI `commit`, Wyoming `audio-stop`)."""


@dataclass(frozen=True)
class End:
    """Flush, deliver the last final, close."""


@dataclass(frozen=True)
class Clear:
    """Drop the open turn's audio without a final (OpenAI `input_audio_buffer.clear`)."""


Input = Configure | AudioIn | Flush | End | Clear


# ---------------------------------------------------------------- outputs besides the protocol messages
@dataclass(frozen=True)
class TurnCommitted:
    """A turn has ended and its final is on the way (emitted before it, in order).
    Not on our own wire; OpenAI Realtime answers it with `input_audio_buffer.committed`."""

    turn_id: int
    start: float
    end: float
    reason: str


@dataclass(frozen=True)
class Closed:
    """The last output: the transport closes with this code and reason."""

    code: int
    reason: str


@dataclass
class TranscriptionFailed(Error):
    """A final that could not be made: on our wire the same `error` event as before; OpenAI
    Realtime tells it apart to answer `conversation.item.input_audio_transcription.failed`."""


Output = Message | TurnCommitted | Closed | object  # `object`: what an adapter `post()`s for itself
Send = Callable[[Output], Awaitable[None]]


def pad(audio: np.ndarray, samples: int) -> np.ndarray:
    """`audio` followed by `samples` of digital silence."""
    return np.concatenate([audio, np.zeros(samples, dtype=np.float32)]) if samples else audio


class SessionCore:
    """One stream. `open(send)` starts it; feed it inputs; `close()` when the transport is gone."""

    def __init__(
        self,
        config: ASRConfig,
        engines: Engines,
        registry: SessionRegistry | None = None,
        source: str = "stream",
        initial: Configure | None = None,
    ) -> None:
        self.config = config
        self.engines = engines
        self.registry = registry
        self.source = source  # the metrics label of the audio: which transport it came through
        self.id = "asr_" + uuid.uuid4().hex[:16]
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.tasks: set[asyncio.Task] = set()
        self.state = SessionState.OPEN
        self.audio_seen = False
        self.finals = 0
        self.sender: asyncio.Task | None = None
        self.pending_finals: collections.deque[asyncio.Task] = collections.deque()
        self.lock = asyncio.Lock()  # audio intake vs. a shutdown arriving from another task
        # received audio waits here, so a transport never stops reading while the engine is busy
        self.intake = Intake(self._process, Budget.from_config(config.common).max_audio_s, self._internal)
        self._apply(initial or Configure(config.stream_defaults))

    # ------------------------------------------------------------ setup
    def _apply(self, configure: Configure) -> None:
        stream = configure.config
        self.stream = stream
        self.prompt = configure.prompt
        self.vad_threshold = self.config.vad_threshold if configure.vad_threshold is None else configure.vad_threshold
        self.pre_speech_pad_s = (
            self.config.pre_speech_pad_s if configure.pre_speech_pad_s is None else configure.pre_speech_pad_s
        )
        self.resampler = StreamResampler(stream.sample_rate, SAMPLE_RATE)
        self.vad = self.engines.vad.stream()
        # the turn buffer is the session's audio: a turn reaching MAX_BUFFERED_AUDIO_SECS is finalized
        max_turn = Budget.from_config(self.config.common).turn_cap(self.config.max_turn_s, self.pre_speech_pad_s)
        self.turns = TurnTaker(stream.turn_detection, self.vad_threshold, max_turn, endpointing(self.config))
        self.endpointer = Endpointer(self.engines, self.turns, self._speculate_final, self._speculate_turn)
        self.clock = 0  # 16 kHz samples through the VAD: the stream's sample clock
        self._reset_audio()
        self.turn_id = 0
        self.turn_id_finalized = 0
        self.finalized_at = 0  # the sample clock when the last turn ended (OpenAI: the buffer was committed)

    def _reset_audio(self) -> None:
        self.pending = np.zeros(0, dtype=np.float32)  # 16 kHz samples not yet a whole VAD frame
        self.ring = AudioRing(self.clock, self.pre_speech_pad_s)  # the open turn, or the pre-speech pad while idle
        self.turn_open = False
        self.partial_mark = self.clock
        self.partial_busy = False
        self.previous: PreviousTurn | None = None  # the last turn, for the next one's context (context.py)

    def effective_config(self) -> dict[str, Any]:
        data = self.stream.to_dict()
        data["model"] = self.config.model_name
        return data

    @property
    def now(self) -> float:
        return self.clock / SAMPLE_RATE

    @property
    def ending(self) -> bool:
        return self.state != SessionState.OPEN

    # ------------------------------------------------------------ life
    def open(self, send: Send) -> None:
        """Start delivering outputs to `send` (in order, one at a time) and say `Ready`."""
        if self.registry is not None:
            self.registry.add(self.id, self.shutdown)
        self.sender = asyncio.create_task(self._send_loop(send))
        logs.event(log, "session start", session_id=self.id, source=self.source)
        self._emit(Ready(session_id=self.id, config=self.effective_config()))

    async def close(self) -> None:
        """The transport is gone: stop everything still running for it."""
        self.state = SessionState.CLOSED
        if self.registry is not None:
            self.registry.remove(self.id)
        sender = self.sender
        if sender is not None and not sender.done():
            sender.cancel()  # nothing left to deliver to
        await self.intake.stop()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*(t for t in (sender, *self.tasks) if t is not None), return_exceptions=True)
        logs.event(log, "session end", session_id=self.id, finals=self.finals, audio_s=round(self.now, 3))

    async def delivered(self) -> None:
        """Until the sender is done (the close went out, or the transport failed)."""
        if self.sender is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(self.sender)

    async def _send_loop(self, send: Send) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, Closed):
                # errors queued while the last final was being made (e.g. audio after `end`) still go out
                while not self.outbox.empty():
                    late = self.outbox.get_nowait()
                    if isinstance(late, Message):
                        with contextlib.suppress(Exception):
                            await send(late)
                with contextlib.suppress(Exception):
                    await send(item)
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
                await send(message)
            except Exception:
                return  # the transport is gone; its close() cleans up

    def _emit(self, message: Output) -> None:
        self.outbox.put_nowait(message)

    def _internal(self, exc: Exception) -> None:
        """A bug while processing received audio: logged by type only (no user data), reported, and the
        session goes on (what the transports' receive loop does for errors raised in a hook)."""
        logs.event(log, "unexpected error in session", logging.ERROR, session_id=self.id, error=type(exc).__name__)
        if isinstance(exc, CodedError):
            self.report(exc)
        else:
            self.report(CodedError("internal", "internal error; the audio was not processed"))

    def report(self, error: CodedError) -> None:
        """A client error, as an `error` event in order with the rest."""
        self.count_error(error)
        self._emit(Error(code=error.code, message=error.message, fatal=error.fatal, session_id=self.id))

    def count_error(self, error: CodedError) -> None:
        """The metric and the log line of a client error (no client text: the code only)."""
        metrics.errors.labels(error.code).inc()
        logs.event(log, "client error", logging.INFO, session_id=self.id, code=error.code)

    def post(self, event: object) -> None:
        """An adapter's own event, delivered to its `send` in order with the core's outputs."""
        self._emit(event)

    def announce(self) -> None:
        """`Ready` again with the effective config (a transport's settings changed, the core's did not)."""
        self._emit(Ready(session_id=self.id, config=self.effective_config()))

    # ------------------------------------------------------------ inputs
    async def handle(self, event: Input) -> None:
        if isinstance(event, AudioIn):
            await self.audio(event.data)
        elif isinstance(event, Configure):
            self.configure(event)
        elif isinstance(event, Flush):
            await self.flush()
        elif isinstance(event, End):
            await self.end()
        elif isinstance(event, Clear):
            await self.clear()

    def configure_message(self, data: dict[str, Any]) -> None:
        """Our protocol's `config` message (validated here, so every adapter reads it the same)."""
        self._check_configurable()
        self.configure(Configure(parse_config(data, defaults=self.config.stream_defaults)))

    def _check_configurable(self) -> None:
        if self.ending:
            raise ProtocolError("ended", "the session is ending; config ignored")
        if self.audio_seen:
            raise ProtocolError(
                "config_too_late", "config must come before the first audio frame; the current config stays"
            )

    def configure(self, configure: Configure) -> None:
        self._check_configurable()
        self._apply(configure)
        self._emit(Ready(session_id=self.id, config=self.effective_config()))

    async def audio(self, data: bytes) -> None:
        if self.ending:
            raise ProtocolError("ended", "audio after 'end' is ignored: the session is closing")
        if len(data) > self.config.common.max_frame_bytes:
            raise ProtocolError(
                "frame_too_large",
                f"audio frame of {len(data)} bytes is over MAX_FRAME_BYTES ({self.config.common.max_frame_bytes})",
            )
        if not data:
            raise ProtocolError("empty_frame", "empty audio frame ignored")
        try:
            samples = decode(data, self.stream.encoding)
        except AudioFormatError as exc:
            raise ProtocolError(exc.code, exc.message + "; frame ignored") from None
        self.audio_seen = True
        metrics.audio_seconds.labels(self.source).inc(len(samples) / self.stream.sample_rate)
        await self.intake.put(samples, len(samples) / self.stream.sample_rate)

    async def _process(self, samples: np.ndarray) -> None:
        """The intake's consumer (services/asr/intake.py): audio in arrival order through the VAD."""
        await self._wait_for_engine()
        async with self.lock:
            if not self.ending:
                await self._feed(self.resampler.process(samples))

    async def flush(self) -> bool:
        """End the open turn now; True when there was one (its final is queued)."""
        await self.intake.drained()  # the audio received before the flush belongs to the turn
        async with self.lock:
            before = self.turn_id_finalized
            await self._finish_turn(EndReason.FLUSH)
            return self.turn_id_finalized != before

    async def clear(self) -> None:
        """Forget the open turn and the audio not yet through the VAD; no final for it."""
        await self.intake.drained()  # in order: the audio received before the clear is what it drops
        async with self.lock:
            self.endpointer.drop()
            self.turns.reset()
            self.resampler = StreamResampler(self.stream.sample_rate, SAMPLE_RATE)
            self.clock += len(self.pending)  # dropped, but the stream's clock counts it
            self._reset_audio()

    async def _wait_for_engine(self) -> None:
        """Audio much faster than real time piles up finals; past a few, stop reading until the
        oldest is done, so memory stays bounded and the transport pushes back on the client."""
        while self.pending_finals and self.pending_finals[0].done():
            self.pending_finals.popleft()
        while len(self.pending_finals) >= MAX_PENDING_FINALS:
            await asyncio.wait({self.pending_finals.popleft()})

    async def idle_timeout(self, idle: float) -> None:
        self.report(ProtocolError("idle_timeout", f"no message for {idle:g} s; closing", fatal=True))
        await self._close_stream(EndReason.END, 1000, "idle timeout")

    async def end(self) -> None:
        await self._close_stream(EndReason.END, 1000, "end of stream")

    async def shutdown(self) -> None:
        """Server shutdown: finish the open turn, deliver its final, close with 1001."""
        if not self.ending:
            await self._close_stream(EndReason.END, 1001, "server shutting down")
        await self.delivered()  # until the final and the close are out

    async def _close_stream(self, reason: str, code: int, close_reason: str) -> None:
        await self.intake.drained()  # nothing accepted is lost: the audio received so far gets its final
        async with self.lock:
            if self.ending:
                return
            self.state = SessionState.ENDING
            await self._drain_and_finish(reason)
        self.outbox.put_nowait(Closed(code, close_reason))

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
            elif not force:
                self._maybe_speculate()
        self._maybe_partial()

    def _keep(self, frame: np.ndarray) -> None:
        self.ring.append(frame)

    def _trim_idle(self) -> None:
        self.ring.trim_idle()

    def _turn_audio(self, turn_start: float) -> tuple[np.ndarray, float]:
        """Audio from the pre-speech pad before `turn_start` to now, and its start time (services/asr/ring.py)."""
        return self.ring.turn_audio(turn_start)

    async def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if action.kind == ActionKind.SPEECH_START:
                if not self.turn_open:
                    self.turn_open = True
                    self.turn_id += 1
                    self.partial_mark = self.clock
                self.endpointer.drop()  # speech again: a speculative final of the pause is stale
                self._emit(SpeechStart(session_id=self.id, timestamp=action.timestamp))
            elif action.kind == ActionKind.SPEECH_END:
                self._emit(SpeechEnd(session_id=self.id, timestamp=action.timestamp))
            elif action.kind == ActionKind.CHECK_TURN:
                await self._check_turn()
            elif action.kind == ActionKind.FINALIZE:
                self._finalize(action)

    def _maybe_speculate(self) -> None:
        """ASR_SPECULATE_SECS into a silence (before stop_secs), start the final's transcription
        while the engine is idle, so the final is ready about when the turn ends
        (services/asr/endpointing.py)."""
        after = self.config.speculate_silence_s
        if not after or self.stream.turn_detection.mode == "none" or self.turns.state != TurnPhase.SPEAKING:
            return
        self.endpointer.drop_stale()
        silence = self.turns.silence_s
        if silence < after - 1e-9 or self.endpointer.current() or not self.engines.transcriber.idle():
            return
        # padded with digital silence to the length the final would have at stop_secs, so the
        # guess decodes the same window as the final it stands in for
        turn = self._turn_audio(self.turns.turn_start or 0.0)[0]
        detection = self.stream.turn_detection
        missing = int(round(max(0.0, detection.stop_secs - silence) * SAMPLE_RATE))
        self.endpointer.speculate(pad(turn, missing), heard=len(turn))
        if detection.mode == "smart_turn":
            # Smart Turn's first answer too, on the exact audio the first check will hold if only
            # silence comes
            check = pad(turn, self.turns.frames_to_first_check() * FRAME_SAMPLES)
            self.endpointer.speculate_turn(check, heard=len(turn))

    async def _check_turn(self) -> None:
        """Smart Turn (and the transcript) on the turn so far, with the final's transcription
        already under way (services/asr/endpointing.py)."""
        audio, _ = self._turn_audio(self.turns.turn_start or 0.0)
        await self._act(await self.endpointer.check(audio, self.now))

    async def _finish_turn(self, reason: str) -> None:
        await self._act(self.turns.force(reason, self.now))

    def _task(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------ finals and partials
    def _finalize(self, action: Action) -> None:
        audio, offset = self._turn_audio(action.turn_start or 0.0)
        self.ring.finalized(action.speech_end)  # the ring stays: the next turn's pre-speech pad is intact
        self.turn_open = False
        self.turn_id_finalized = self.turn_id
        self.finalized_at = self.clock
        transcript = self.endpointer.take(action, audio)
        if transcript is None:
            transcript = self._task(self._transcribe_final(audio, offset, self._context(action.turn_start or 0.0)))
        self.previous = PreviousTurn.keep(audio, offset, action.speech_end, transcript)
        task = asyncio.create_task(self._final(transcript, offset, len(audio), action))
        self.pending_finals.append(task)
        start = action.turn_start or 0.0
        self._emit(TurnCommitted(self.turn_id, start, max(start, action.timestamp), action.reason or EndReason.FLUSH))
        self.outbox.put_nowait((task, time.perf_counter()))

    def _speculate_final(self, audio: np.ndarray) -> asyncio.Task:
        """The Endpointer's early final of the open turn (its audio starts where the ring says)."""
        turn_start = self.turns.turn_start or 0.0
        return self._task(self._transcribe_final(audio, self.ring.turn_offset(turn_start), self._context(turn_start)))

    def _speculate_turn(self, audio: np.ndarray) -> asyncio.Task:
        """The Endpointer's early Smart Turn answer, a task of the session (cancelled with it)."""
        return self._task(self.engines.turn_probability(audio))

    def _context(self, turn_start: float) -> PreviousTurn | None:
        """The previous turn, when the turn starting at `turn_start` is decoded after it (context.py)."""
        previous = self.previous
        if previous is None or self.prompt:
            return None
        return previous if previous.follows(turn_start, self.config.context_gap_s) else None

    async def _transcribe_final(self, audio: np.ndarray, offset: float, previous: PreviousTurn | None) -> Transcript:
        stream = self.stream
        context, prefix = await previous.context(offset) if previous is not None else (None, None)
        request = Request(
            audio,
            Kind.FINAL,
            language=stream.language,
            word_timestamps=stream.word_timestamps,
            prompt=self.prompt,
            owner=self.id,
            context=context,
            prefix=prefix,
        )
        return await self.engines.transcriber.transcribe(request)

    async def _final(self, transcript: asyncio.Task, offset: float, samples: int, action: Action) -> Message:
        start = action.turn_start or 0.0
        end = max(start, min(action.speech_end or action.timestamp, offset + samples / SAMPLE_RATE))
        try:
            result = await transcript
        except Exception as exc:
            logs.event(log, "final transcription failed", logging.ERROR, session_id=self.id, error=type(exc).__name__)
            metrics.errors.labels("transcription_failed").inc()
            if isinstance(exc, CodedError):  # inference_timeout, engine_unavailable, gpu_out_of_memory
                return TranscriptionFailed(code=exc.code, message=exc.message, session_id=self.id)
            return TranscriptionFailed(
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
                reason=action.reason or EndReason.FLUSH,
                probability=None if action.probability is None else round(action.probability, 4),
                checks=[c.to_dict() for c in action.checks],
                held=action.held,
            ),
        )

    def _maybe_partial(self) -> None:
        speaking = self.turns.state == TurnPhase.SPEAKING
        if not (self.stream.partials and self.turn_open and speaking) or self.partial_busy:
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
        self._task(self._partial(audio, self.turn_id, round(self.now, 3)))

    async def _partial(self, audio: np.ndarray, turn_id: int, timestamp: float) -> None:
        try:
            request = Request(audio, Kind.PARTIAL, language=self.stream.language, owner=self.id)
            result = await self.engines.transcriber.transcribe(request)
        except Exception as exc:
            error = type(exc).__name__
            logs.event(log, "partial transcription failed", logging.WARNING, session_id=self.id, error=error)
            return
        finally:
            self.partial_busy = False
        # only while the user speaks: after speech_end the next thing a client sees is the final
        speaking = self.turns.state == TurnPhase.SPEAKING
        if self.turn_open and self.turn_id == turn_id and speaking and not self.ending and result.text:
            self._emit(
                Partial(
                    session_id=self.id, text=result.text, confidence=round(result.confidence, 4), timestamp=timestamp
                )
            )
