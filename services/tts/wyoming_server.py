"""Wyoming TTS server (the protocol of Home Assistant's voice pipeline), inside the TTS process.

A TCP server started beside the HTTP one when `TTS_WYOMING_PORT` is set. Each connection is one
TTS session core (core.py), so text limits, the per-connection budget, the engine's concurrency,
metrics and logs are those of `/v1/tts/stream`; a connection with a synthesis queued or running
holds one slot of the session limit (MAX_SESSIONS), like a WebSocket session.

Events (docs/tts.md has an example session):
- `describe` → `info`: one TTS program, its voices (the engine's built-in voices, plus registered
  voices where the engine clones) with their languages, `supports_synthesize_streaming: true`.
- `synthesize {text, voice?: {name? | language?}}` → `audio-start`, `audio-chunk`*, `audio-stop`.
  Audio is 16-bit mono PCM at the engine's own rate (the `rate` of `audio-start`).
- streaming: `synthesize-start {voice?}`, `synthesize-chunk {text}`*, `synthesize-stop` →
  `audio-start`, `audio-chunk`* (sentence by sentence, while text still arrives), `audio-stop`,
  `synthesize-stopped`. The `synthesize` a streaming client also sends (the whole text, for
  servers without streaming) is ignored while a stream is open.
- `ping` → `pong`.
Bad input gets a Wyoming `error {text, code}` and the connection goes on. A failed or refused
stream still ends with `synthesize-stopped`, so a client waiting for it never hangs.

Wyoming has no authentication: the server binds to loopback by default (`TTS_WYOMING_HOST`), and
API_KEYS do not protect it. Expose it only on a network you trust.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from dataclasses import dataclass
from typing import Any

from wyoming.audio import AudioChunk as WyAudioChunk
from wyoming.audio import AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.ping import Ping, Pong
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

from services.common import logs
from services.common.errors import CodedError
from services.common.limits import CapacityError, SessionLimiter
from services.common.protocol.base import Error, Message
from services.common.protocol.tts import AudioChunk, SessionConfig, SynthesisComplete
from services.common.validate import InputError
from services.common.wyoming import GuardedHandler, Listener

from . import core, metrics
from .runtime import TTSRuntime

log = logging.getLogger("voice.tts.wyoming")

PROGRAM = "voice-stack-tts"
SAMPLE_WIDTH = 2  # bytes: pcm_s16le
_LANGUAGE = re.compile(r"([a-z]{2,3})(?:[-_]([a-z]{2}))?", re.I)
_ids = itertools.count(1)
ENGINE_CREDITS = {  # who made the voices, shown by Home Assistant beside them
    "piper": Attribution(name="Piper (rhasspy)", url="https://github.com/rhasspy/piper"),
    "espeak": Attribution(name="eSpeak NG", url="https://github.com/espeak-ng/espeak-ng"),
    "chatterbox": Attribution(name="Chatterbox (Resemble AI)", url="https://github.com/resemble-ai/chatterbox"),
}


def voice_language(voice_id: str) -> str:
    """A voice's language from its id, where the id leads with one (espeak `en-us`, Piper
    `en_US-joe-medium`), as `en_US`; else `en` (Chatterbox voices: the variant's language)."""
    match = _LANGUAGE.match(voice_id)
    if not match or (len(voice_id) > match.end() and voice_id[match.end()] not in "-_"):
        return "en"
    lang, region = match.group(1).lower(), match.group(2)
    return f"{lang}_{region.upper()}" if region else lang


def _same_language(wanted: str, voice_id: str) -> bool:
    a, b = wanted.replace("-", "_").lower(), voice_language(voice_id).lower()
    return a == b or b.startswith(a + "_") or a.startswith(b + "_")


async def info(runtime: TTSRuntime) -> Info:
    engine = runtime.engine
    made_by = Attribution(name="voice stack", url="https://github.com/")
    voices: list[TtsVoice] = []
    if engine is not None:
        credit = ENGINE_CREDITS.get(engine.name, made_by)
        entries = [(v.id, v.name) for v in engine.builtin_voices()]
        if engine.registers_voices and runtime.store is not None:
            with contextlib.suppress(Exception):  # the store down: the built-in voices still speak
                entries += [(v["id"], v.get("name") or v["id"]) for v in await runtime.store.list() if not v["builtin"]]
        voices = [
            TtsVoice(
                name=voice_id,
                attribution=credit,
                installed=True,
                description=label,
                version=None,
                languages=[voice_language(voice_id)],
            )
            for voice_id, label in entries
        ]
    program = TtsProgram(
        name=PROGRAM,
        attribution=made_by,
        installed=True,
        description=f"Self-hosted streaming TTS ({runtime.model or (engine.name if engine else 'loading')})",
        version=None,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program])


@dataclass
class _Stream:
    """An open synthesize-start … synthesize-stop; `failed` when its start was refused."""

    request_id: str
    failed: bool = False


class _Output:
    """The core's output as Wyoming events: audio-start before a request's first chunk, audio-stop
    (and synthesize-stopped for a stream) when it completes or fails."""

    def __init__(self, handler: WyomingHandler) -> None:
        self.handler = handler

    async def event(self, message: Message) -> None:
        if isinstance(message, SynthesisComplete):
            await self.handler.request_done(message.request_id)
        elif isinstance(message, Error):
            await self.handler.send_error(CodedError(message.code, message.message))
            if message.request_id:
                await self.handler.request_done(message.request_id)
        # ready, cancelled, voice_registered: nothing in Wyoming says them

    async def audio(self, chunk: AudioChunk, data: bytes) -> None:
        await self.handler.request_audio(chunk, data)


class WyomingHandler(GuardedHandler):
    def __init__(self, reader, writer, server: WyomingTTS) -> None:
        super().__init__(reader, writer, server.runtime.config.common, logger=log)
        self.server = server
        self.runtime = server.runtime
        self.core: core.TTSCore | None = None
        self.stream: _Stream | None = None
        self.streaming_ids: set[str] = set()  # requests that end with synthesize-stopped
        self.started: set[str] = set()  # requests whose audio-start went out
        self._slot: contextlib.AsyncExitStack | None = None
        metrics.WYOMING_CONNECTIONS.inc()

    async def disconnect(self) -> None:
        metrics.WYOMING_CONNECTIONS.dec()
        if self.core is not None:
            await self.core.close()
        await self._release()

    async def on_idle(self) -> bool:
        if self.stream is None and self.core is not None and self.core.busy:
            return True  # a long synthesis is not idleness; a stream left open without text is
        return await super().on_idle()

    # ------------------------------------------------------------------ events in
    async def handle_event(self, event: Event) -> bool:
        kind = event.type
        if Describe.is_type(kind):
            await self.write_event((await info(self.runtime)).event())
        elif Ping.is_type(kind):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif Synthesize.is_type(kind):
            if self.stream is None:  # inside a stream it is the compatibility copy of the whole text
                await self._synthesize(_parse(event, Synthesize))
        elif SynthesizeStart.is_type(kind):
            await self._stream_start(_parse(event, SynthesizeStart))
        elif SynthesizeChunk.is_type(kind):
            await self._stream_chunk(_parse(event, SynthesizeChunk))
        elif SynthesizeStop.is_type(kind):
            await self._stream_stop()
        else:
            raise InputError("unknown_event", f"unknown event type {kind[:64]!r} for a TTS server")
        return True

    async def _synthesize(self, request: Synthesize) -> None:
        session = await self._session()
        try:
            await session.handle(core.Synthesize(request.text, self._new_id(), self._voice(request.voice)))
        except CodedError:
            await self._release_if_idle()  # a refused request holds no session slot
            raise

    async def _stream_start(self, start: SynthesizeStart) -> None:
        if self.stream is not None:
            raise InputError("already_started", "synthesize-start while a stream is open; send synthesize-stop first")
        stream = self.stream = _Stream(self._new_id())
        try:
            session = await self._session()
            await session.handle(core.Text("", stream.request_id, self._voice(start.voice)))  # opens the request
        except CodedError:
            stream.failed = True  # its chunks are dropped; synthesize-stop still answers synthesize-stopped
            await self._release_if_idle()
            raise
        self.streaming_ids.add(stream.request_id)

    async def _stream_chunk(self, chunk: SynthesizeChunk) -> None:
        if self.stream is None:
            raise InputError("not_started", "synthesize-chunk before synthesize-start")
        if not self.stream.failed:
            await self.core.handle(core.Text(chunk.text, self.stream.request_id))

    async def _stream_stop(self) -> None:
        stream, self.stream = self.stream, None
        if stream is None:
            raise InputError("not_started", "synthesize-stop before synthesize-start")
        if stream.failed:
            await self.write_event(SynthesizeStopped().event())
            return
        await self.core.handle(core.End(stream.request_id))  # the rest, then audio-stop, synthesize-stopped

    # ------------------------------------------------------------------ events out (from the core)
    async def request_audio(self, chunk: AudioChunk, data: bytes) -> None:
        if chunk.request_id not in self.started:
            self.started.add(chunk.request_id)
            await self.write_event(AudioStart(rate=chunk.sample_rate, width=SAMPLE_WIDTH, channels=1).event())
        await self.write_event(WyAudioChunk(rate=chunk.sample_rate, width=SAMPLE_WIDTH, channels=1, audio=data).event())

    async def request_done(self, request_id: str) -> None:
        """Completed or failed: close what this request opened, so the client never waits."""
        if request_id in self.started:
            self.started.discard(request_id)
            await self.write_event(AudioStop().event())
        if request_id in self.streaming_ids:
            self.streaming_ids.discard(request_id)
            await self.write_event(SynthesizeStopped().event())
        await self._release_if_idle()

    # ------------------------------------------------------------------ helpers
    async def _session(self) -> core.TTSCore:
        """The connection's core, created on first use; holds a session slot while busy."""
        if not self.runtime.loaded:
            raise InputError("not_ready", self.runtime.load_error or "model still loading; retry shortly")
        if self._slot is None:
            slot = contextlib.AsyncExitStack()
            try:
                await slot.enter_async_context(self.server.limiter.slot())
            except CapacityError as exc:
                raise CodedError("capacity", str(exc), status=503) from None
            self._slot = slot
        if self.core is None:
            engine_rate = self.runtime.engine.sample_rate
            config = SessionConfig(sample_rate=engine_rate, encoding="pcm_s16le")
            self.core = core.TTSCore(self.runtime, _Output(self), session_id=self.id, config=config)
            await self.core.open(send_ready=False)
            logs.event(log, "wyoming session", connection=self.id, rate=engine_rate)
        return self.core

    async def _release_if_idle(self) -> None:
        if self.core is None or not self.core.busy:
            await self._release()

    async def _release(self) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            await slot.aclose()

    def _new_id(self) -> str:
        return f"{self.id}-{next(_ids)}"

    def _voice(self, voice: SynthesizeVoice | None) -> str | None:
        """Wyoming names a voice (`name`) or only a language: the first voice that speaks it."""
        if voice is None:
            return None
        if voice.name is not None:
            return voice.name
        if voice.language is None:
            return None
        if not isinstance(voice.language, str):
            raise InputError("bad_event", "voice.language must be a string")
        for builtin in self.runtime.engine.builtin_voices():
            if _same_language(voice.language, builtin.id):
                return builtin.id
        raise InputError("unknown_voice", f"no voice speaks language {voice.language[:16]!r}")


def _parse(event: Event, cls: Any) -> Any:
    try:
        return cls.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError("bad_event", f"{event.type}: missing or malformed fields") from None


class WyomingTTS:
    """The server: started and stopped with the TTS app (services/tts/app.py)."""

    def __init__(self, runtime: TTSRuntime, limiter: SessionLimiter) -> None:
        self.runtime = runtime
        self.limiter = limiter
        self.listener = Listener(lambda reader, writer: WyomingHandler(reader, writer, self), log)
        self.port = 0

    async def start(self) -> None:
        config = self.runtime.config
        await self.listener.start(config.wyoming_host, config.wyoming_port)
        self.port = config.wyoming_port

    async def stop(self) -> None:
        await self.listener.stop()
