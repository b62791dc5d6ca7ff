"""Wyoming ASR server (the protocol of Home Assistant's voice pipeline), inside the ASR process.

A TCP server (`wyoming.server.AsyncTcpServer`) started beside the HTTP one when
`ASR_WYOMING_PORT` is set; it shares the process's one model, session limit, metrics and logs.
Per connection: `describe` → `info`; `transcribe` (optional: language) then `audio-start` /
`audio-chunk`* / `audio-stop` → `transcript-start`, `transcript-chunk`*, `transcript`,
`transcript-stop` (the streaming events of Wyoming ≥ 1.7; `transcript` stays for older clients).
Each utterance is one session core with turn detection off: the client (Home Assistant's own VAD)
decides where the utterance ends by sending `audio-stop`. Bad input gets a Wyoming `error` event
(`text`, `code`) and the connection goes on where it can.

Wyoming has no authentication: the server binds to loopback by default (`ASR_WYOMING_HOST`), and
API_KEYS do not protect it. Expose it only on a network you trust.

Every read is bounded before it is done (the wyoming package's own reader is not): the header line
by the stream's line limit, `data` by MAX_DATA_BYTES, the payload by MAX_FRAME_BYTES.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error as WyomingError
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.ping import Ping, Pong

from services.common import logs, validate
from services.common.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from services.common.errors import CodedError
from services.common.limits import CapacityError, SessionLimiter
from services.common.protocol.asr import Final, Partial, SpeechStart, StreamConfig, TurnDetection
from services.common.protocol.base import Error
from services.common.server import SessionRegistry
from services.common.validate import InputError
from services.common.wyoming import GuardedHandler, Listener  # the bounded reader and loop, shared with TTS

from .append_only import AppendOnlyText
from .config import ASRConfig
from .core import Closed, Configure, Output, SessionCore, TranscriptionFailed
from .engines import Engines

log = logging.getLogger("voice.asr.wyoming")

PROGRAM = "voice-stack-asr"


def languages(model_name: str) -> list[str]:
    """What the model can transcribe: English-only checkpoints say so in their name (`*.en`)."""
    if model_name.endswith(".en") or model_name.endswith("-en"):
        return ["en"]
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES  # Whisper's language list (private name)
    except ImportError:
        return []
    return sorted(_LANGUAGE_CODES)


def info(config: ASRConfig) -> Info:
    made_by = Attribution(
        name="OpenAI Whisper via SYSTRAN faster-whisper", url="https://github.com/SYSTRAN/faster-whisper"
    )
    model = AsrModel(
        name=config.model_name,
        attribution=made_by,
        installed=True,
        description=f"faster-whisper {config.model_name}",
        version=None,
        languages=languages(config.model_name),
    )
    program = AsrProgram(
        name=PROGRAM,
        attribution=Attribution(name="voice stack", url="https://github.com/"),
        installed=True,
        description="Self-hosted streaming ASR (faster-whisper, Silero VAD, Smart Turn)",
        version=None,
        models=[model],
        supports_transcript_streaming=True,
    )
    return Info(asr=[program])


class Utterance:
    """One `audio-start` … `audio-stop`: a session core and the transcript events it turns into."""

    def __init__(self, core: SessionCore, start: AudioStart, language: str | None, write) -> None:
        self.core = core
        self.start = start
        self.language = language
        self.write = write
        self.started = False  # transcript-start sent
        self.text = AppendOnlyText()  # chunks of the turn being heard
        self.space = False
        self.finals: list[str] = []
        self.done = asyncio.Event()

    async def send(self, event: Output) -> None:
        if isinstance(event, SpeechStart):
            await self._start()
        elif isinstance(event, Partial):
            if self.started:
                await self._chunk(self.text.partial(event.text))
        elif isinstance(event, Final):
            await self._start()
            await self._chunk(self.text.final(event.text))
            self.finals.append(event.text.strip())
            self.text = AppendOnlyText()
            self.space = True  # a later turn's chunks start with the space `transcript` joins them with
        elif isinstance(event, TranscriptionFailed | Error):
            await self.write(WyomingError(text=event.message, code=event.code).event())
        elif isinstance(event, Closed):
            await self._start()
            text = " ".join(t for t in self.finals if t)
            await self.write(Transcript(text=text, language=self.language).event())
            await self.write(TranscriptStop().event())
            self.done.set()

    async def _start(self) -> None:
        if not self.started:
            self.started = True
            await self.write(TranscriptStart(language=self.language).event())

    async def _chunk(self, piece: str) -> None:
        if piece:
            piece, self.space = (" " + piece if self.space else piece), False
            await self.write(TranscriptChunk(text=piece).event())


class WyomingHandler(GuardedHandler):
    """One connection on the shared guarded loop (services/common/wyoming.py: bounded reads, idle
    timeout, CodedError → Wyoming `error`, the connection going on)."""

    def __init__(self, reader, writer, server: WyomingASR) -> None:
        super().__init__(reader, writer, server.config.common, logger=log)
        self.server = server
        self.config = server.config
        self.language: str | None = None
        self.utterance: Utterance | None = None
        self.rejected = False  # an audio-start was refused: its chunks are dropped until audio-stop
        self._slot: contextlib.AsyncExitStack | None = None

    async def disconnect(self) -> None:
        await self._finish(deliver=False)

    async def on_idle(self) -> bool:
        """An utterance left open (no audio-stop) is finished as audio-stop would: nothing accepted
        is lost, as on the WebSockets. Then `idle_timeout` and the connection is closed."""
        await self._finish(deliver=True)
        return await super().on_idle()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(info(self.config).event())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif Transcribe.is_type(event.type):
            self.language = _language(Transcribe.from_event(event).language)
        elif AudioStart.is_type(event.type):
            await self._audio_start(_audio_format(event, AudioStart))
        elif AudioChunk.is_type(event.type):
            await self._audio_chunk(_audio_format(event, AudioChunk))
        elif AudioStop.is_type(event.type):
            await self._audio_stop()
        else:
            raise InputError("unknown_event", f"unknown event type {event.type[:64]!r} for an ASR server")
        return True

    async def _audio_start(self, start: AudioStart) -> None:
        if self.utterance is not None:
            raise InputError("already_started", "audio-start while an utterance is open; send audio-stop first")
        self.rejected = True  # until this start is accepted
        _check_format(start)
        if not self.server.engines.loaded:
            raise InputError("not_ready", "models still loading; retry shortly")
        slot = contextlib.AsyncExitStack()
        try:
            await slot.enter_async_context(self.server.limiter.slot())
        except CapacityError as exc:
            raise InputError("capacity", str(exc)) from None
        self._slot = slot
        stream = StreamConfig(
            sample_rate=start.rate,
            encoding="pcm_s16le",
            language=self.language,
            partials=True,
            word_timestamps=False,
            turn_detection=TurnDetection(mode="none"),
        )
        core = SessionCore(
            self.config, self.server.engines, self.server.registry, source="wyoming", initial=Configure(stream)
        )
        self.utterance = Utterance(core, start, self.language, self.write_event)
        self.rejected = False
        core.open(self.utterance.send)
        logs.event(log, "wyoming utterance", connection=self.id, session_id=core.id, rate=start.rate)

    async def _audio_chunk(self, chunk: AudioChunk) -> None:
        utterance = self.utterance
        if utterance is None:
            if self.rejected:
                return  # its audio-start already got the error
            raise InputError("not_started", "audio-chunk before audio-start")
        start = utterance.start
        if (chunk.rate, chunk.width, chunk.channels) != (start.rate, start.width, start.channels):
            raise InputError(
                "format_mismatch",
                f"audio-chunk is {chunk.rate} Hz/{chunk.width * 8} bit/{chunk.channels} ch but audio-start said "
                f"{start.rate} Hz/{start.width * 8} bit/{start.channels} ch; chunk ignored",
            )
        try:
            await utterance.core.audio(chunk.audio)
        except CodedError as exc:
            utterance.core.report(exc)

    async def _audio_stop(self) -> None:
        if self.utterance is None:
            if self.rejected:
                self.rejected = False
                return
            raise InputError("not_started", "audio-stop before audio-start")
        await self._finish(deliver=True)

    async def _finish(self, deliver: bool) -> None:
        utterance, self.utterance = self.utterance, None
        if utterance is not None:
            if deliver:
                await utterance.core.end()
                await utterance.core.delivered()
            await utterance.core.close()
        slot, self._slot = self._slot, None
        if slot is not None:
            await slot.aclose()


def _audio_format(event: Event, cls):
    try:
        value = cls.from_event(event)
        if cls is AudioChunk and not isinstance(value.audio, bytes | bytearray):
            raise TypeError
        return value
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError("bad_event", f"{event.type} needs integer rate, width and channels") from None


def _check_format(start: AudioStart) -> None:
    rate, width, channels = start.rate, start.width, start.channels
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (rate, width, channels)):
        raise InputError("bad_event", "audio-start needs integer rate, width and channels")
    if width != 2 or channels != 1 or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(
            "unsupported_format",
            f"audio must be 16-bit mono PCM at {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; got {rate} Hz, "
            f"{width * 8 if isinstance(width, int) else '?'} bit, {channels} channel(s)",
        )


def _language(value: Any) -> str | None:
    return validate.language(value)


class WyomingASR:
    """The server: started and stopped with the ASR app (services/asr/app.py)."""

    def __init__(self, config: ASRConfig, engines: Engines, limiter: SessionLimiter, registry: SessionRegistry) -> None:
        self.config = config
        self.engines = engines
        self.limiter = limiter
        self.registry = registry
        self.listener = Listener(lambda reader, writer: WyomingHandler(reader, writer, self), log)

    async def start(self) -> None:
        await self.listener.start(self.config.wyoming_host, self.config.wyoming_port)

    async def stop(self) -> None:
        await self.listener.stop()
