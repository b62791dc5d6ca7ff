"""The agent session: one conversation (ASR → Claude → TTS), independent of how audio travels.

A transport (the browser WebSocket in `transport_ws.py`, the Twilio Media Streams bridge) owns the
connection to the user. It creates one `AgentSession`, feeds it the user's side, and implements
`AgentOutput` to carry the agent's side back in its own format.

Transport → session (all coroutines, call from the event loop)::

    session = AgentSession(settings, output, session_config)   # config: dict or SessionConfig
    await session.start()              # connects ASR + TTS, then calls output.ready(info)
    await session.push_audio(samples)  # float32 mono 16 kHz, any length
    await session.end_of_audio()       # the user's turn is over now (flush; e.g. push-to-talk release)
    await session.user_text("1 2 3")   # a typed / DTMF turn, answered like a spoken one
    session.playback_reached(seg_id)   # audio up to and including segment `seg_id` was played
    await session.close()              # cancels everything, closes ASR and TTS streams

Session → transport (`AgentOutput`, every method a coroutine)::

    ready(info)                         session is live: {"session_id", "mode", "sample_rate", ...}
    transcription(text, final)          ASR partials (final=False) and finals (final=True)
    llm_chunk(text, needs_followup)     answer text as it streams; needs_followup=True marks the
                                        fast acknowledgment ("Mm-hmm.") spoken before the answer
    audio(pcm, sample_rate, segment_id) agent speech, float32 mono at the session's `sample_rate`;
                                        segment ids are unique strings, in playback order
    clear()                             stop playback NOW and drop anything queued (barge-in)
    event(name, **data)                 speech_start, speech_end, interrupted, upstream, ...
    done(waterfall)                     end of a turn, with its latency waterfall (waterfall.py)
    error(code, message, fatal)         something went wrong; fatal=False means the session goes on

What "played" means is the transport's call, because only it knows: the browser transport runs a
real-time playback clock (playback.py) and reports a segment once its expected end has passed; the
Twilio bridge sends a `mark` after audio and reports the segment when Twilio echoes the mark back.
The agent counts as speaking while a turn runs or any audio it sent is not yet reported played,
so after a turn's `done` it still is until its queued tail has played. On barge-in (the ASR hears
the user start speaking while the agent is speaking, or a new turn begins) the session cancels the
Claude stream and the TTS requests at once, calls `clear()` and `event("interrupted", ...)`, and
the conversation history keeps only the answer text whose audio was played (whole sentences, plus
the played share of the sentence that was cut, by words).

Faults never end the session: ASR or TTS unreachable or dropping → `error("asr_unavailable" |
"tts_unavailable" | ..., fatal=False)` and the upstream reconnects with backoff in the background
(`event("upstream", service=..., state="up")` when it is back); Claude errors → `error("llm_...")`
and a spoken apology; every turn ends with `done`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from clients.voice import ASRStream, AudioFrame, Backoff, StreamClosed, TTSStream
from services.common import logs
from services.common.audio import AudioFormatError, validate_sample_rate
from services.common.metrics import counter
from services.common.protocol import asr, tts
from services.common.protocol.base import Error, ProtocolError, check_fields
from services.common.text import IncrementalText  # the same splitter TTS uses: one rule for both

from .config import OrchestratorConfig
from .llm import Conversation, DemoResponder, LLMError, Responder
from .upstream import Upstream
from .waterfall import Waterfall

log = logging.getLogger("voice.orchestrator.session")

INPUT_SAMPLE_RATE = 16000
MODES = ("agent", "direct")
SENTENCE_MAX_CHARS = 250  # longer runs are cut at a clause so speech can start
TTS_STALL_S = 30.0  # a turn waiting this long for TTS progress gives up instead of hanging
KEEPALIVE_S = 15.0  # ASR keepalive while no audio flows
MAX_UNPLAYED = 4096  # audio segments awaiting a playback report; older ones count as played
# TTS errors that are no news: a cancel racing the end of its request, the idle close
TTS_BENIGN_ERRORS = {"nothing_to_cancel", "idle_timeout"}

TURNS = counter("orchestrator", "turns_total", "agent turns answered", labels=("mode",))
INTERRUPTIONS = counter("orchestrator", "interruptions_total", "barge-ins that cut the agent off")
LLM_ERRORS = counter("orchestrator", "llm_errors_total", "Claude failures answered with an apology", labels=("code",))


class AgentOutput(Protocol):
    """What a transport implements to carry the agent's side to the user (see module docstring)."""

    async def ready(self, info: dict[str, Any]) -> None: ...

    async def transcription(self, text: str, final: bool) -> None: ...

    async def llm_chunk(self, text: str, needs_followup: bool = False) -> None: ...

    async def audio(self, pcm: np.ndarray, sample_rate: int, segment_id: str) -> None: ...

    async def clear(self) -> None: ...

    async def event(self, name: str, **data: Any) -> None: ...

    async def done(self, waterfall: dict[str, Any]) -> None: ...

    async def error(self, code: str, message: str, fatal: bool = False) -> None: ...


# ----------------------------------------------------------------------------- session config
SESSION_FIELDS = {"mode", "voice", "sample_rate", "language", "ack", "partials", "turn_detection", "system_prompt"}
MAX_PROMPT_CHARS = 8000


@dataclass
class SessionConfig:
    """The client's per-session choices (the audio_start JSON payload; all optional)."""

    mode: str = "agent"  # "agent" (ASR → Claude → TTS) or "direct" (ASR → TTS, the user's words back)
    voice: str | None = None  # TTS voice id; None = the server's DEFAULT_VOICE / the engine's default
    sample_rate: int = 24000  # rate of the agent audio handed to the transport
    language: str | None = None  # ASR language hint
    ack: bool | None = None  # fast acknowledgment; None = the server's ACK_ENABLED
    partials: bool = True  # forward ASR partial transcripts
    turn_detection: dict[str, Any] | None = None  # passed to the ASR as-is (see docs/asr.md)
    system_prompt: str | None = None  # overrides SYSTEM_PROMPT for this session


def parse_session_config(data: Any, settings: OrchestratorConfig) -> SessionConfig:
    """audio_start payload → SessionConfig; ProtocolError("bad_config", ...) names the bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError("bad_config", "the audio_start payload must be a JSON object")
    check_fields(data, SESSION_FIELDS, "session config")
    cfg = SessionConfig(voice=settings.default_voice, sample_rate=settings.output_sample_rate)
    mode = data.get("mode", cfg.mode)
    if mode not in MODES:
        raise ProtocolError("bad_config", f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    cfg.mode = mode
    voice = data.get("voice", cfg.voice)
    if voice is not None and (not isinstance(voice, str) or not voice or len(voice) > 128):
        raise ProtocolError("bad_config", "voice must be a voice id string or null")
    cfg.voice = voice
    try:
        cfg.sample_rate = validate_sample_rate(data.get("sample_rate", cfg.sample_rate))
    except AudioFormatError as exc:
        raise ProtocolError("bad_config", f"sample_rate: {exc.message}") from None
    for name in ("ack", "partials"):
        value = data.get(name, getattr(cfg, name))
        if value is not None and not isinstance(value, bool):
            raise ProtocolError("bad_config", f"{name} must be true or false")
        setattr(cfg, name, value)
    prompt = data.get("system_prompt")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS):
        raise ProtocolError("bad_config", f"system_prompt must be a string of at most {MAX_PROMPT_CHARS} chars")
    cfg.system_prompt = prompt
    cfg.language = data.get("language")
    cfg.turn_detection = data.get("turn_detection")
    # the ASR's own validator checks language and turn_detection, so the two never disagree
    asr.parse_config(_asr_config(cfg, settings))
    return cfg


def _asr_config(cfg: SessionConfig, settings: OrchestratorConfig) -> dict[str, Any]:
    """The ASR stream config; turn detection left out = the ASR service's own defaults."""
    out: dict[str, Any] = {
        "sample_rate": INPUT_SAMPLE_RATE,
        "encoding": "pcm_s16le",
        "language": cfg.language,
        "partials": cfg.partials,
    }
    if cfg.turn_detection is not None:
        out["turn_detection"] = cfg.turn_detection
    return out


# ----------------------------------------------------------------------------- turn state
@dataclass
class Sentence:
    """One TTS request: a sentence of the answer, or the ack / apology."""

    index: int
    text: str
    request_id: str
    kind: str  # "answer" | "ack" | "apology" | "echo"
    received_s: float = 0.0  # audio received from TTS
    played_s: float = 0.0  # audio the transport reported played
    synth_done: bool = False
    pending: list[tuple[np.ndarray, int]] = field(default_factory=list)  # audio waiting for its turn


@dataclass
class Turn:
    id: int
    user_text: str
    waterfall: Waterfall
    sentences: list[Sentence] = field(default_factory=list)
    emit_index: int = 0  # sentences before this one are fully handed to the transport
    llm_finished: bool = False
    cancelled: bool = False
    recorded: bool = False  # the assistant answer is in the history
    tts_failed: bool = False
    task: asyncio.Task | None = None
    advanced: asyncio.Event = field(default_factory=asyncio.Event)
    chunks: itertools.count = field(default_factory=itertools.count)

    def heard_text(self) -> str:
        """The answer text whose audio was played: whole sentences, then the played share (by
        words) of the sentence that was cut. Acks and apologies are not part of the answer."""
        parts: list[str] = []
        for s in self.sentences:
            if s.kind != "answer":
                continue
            if s.played_s <= 0:
                break
            if s.synth_done and s.played_s >= s.received_s - 1e-3:
                parts.append(s.text)
                continue
            expected = s.received_s if s.synth_done else max(s.received_s, 0.065 * len(s.text))
            words = s.text.split()
            keep = math.floor(len(words) * min(1.0, s.played_s / expected)) if expected > 0 else 0
            if keep:
                parts.append(" ".join(words[:keep]))
            break
        return " ".join(parts)


# ----------------------------------------------------------------------------- the session
AsrFactory = Callable[[dict[str, Any]], ASRStream]
TtsFactory = Callable[[dict[str, Any]], TTSStream]


class AgentSession:
    def __init__(
        self,
        settings: OrchestratorConfig,
        output: AgentOutput,
        session_config: SessionConfig | dict[str, Any] | None = None,
        asr_client_factory: AsrFactory | None = None,
        tts_client_factory: TtsFactory | None = None,
        responder: Responder | None = None,
        session_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.output = output
        if not isinstance(session_config, SessionConfig):
            session_config = parse_session_config(session_config, settings)
        self.config = session_config
        self.session_id = session_id or uuid.uuid4().hex[:12]
        self.responder = responder or DemoResponder()
        self.history = Conversation(settings.history_turns)
        key = settings.upstream_api_key
        asr_factory = asr_client_factory or (lambda cfg: ASRStream(settings.asr_url, cfg, api_key=key))
        tts_factory = tts_client_factory or (lambda cfg: TTSStream(settings.tts_url, cfg, api_key=key))
        asr_cfg = _asr_config(self.config, settings)
        tts_cfg = {"sample_rate": self.config.sample_rate, "encoding": "pcm_f32le"}
        backoff = Backoff(base_s=0.2, max_s=settings.upstream_retry_max_s, max_attempts=None)
        self.asr = Upstream("asr", lambda: asr_factory(asr_cfg), self._on_asr_event, self._on_asr_state, backoff,
                            self.session_id)  # fmt: skip
        self.tts = Upstream("tts", lambda: tts_factory(tts_cfg), self._on_tts_event, self._on_tts_state, backoff,
                            self.session_id)  # fmt: skip
        self._turn: Turn | None = None
        self._last_turn: Turn | None = None
        self._turn_ids = itertools.count(1)
        self._requests: dict[str, tuple[Turn, Sentence]] = {}
        self._unplayed: OrderedDict[str, tuple[Turn, Sentence, float]] = OrderedDict()
        self._speech_end_at: float | None = None
        self._closed = False
        self._dropped_audio_s = 0.0
        self._last_audio_at = time.monotonic()
        self._keepalive: asyncio.Task | None = None
        self._ready_sent = False
        self._early_errors: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ transport → session
    async def start(self, connect_timeout_s: float = 10.0) -> dict[str, Any]:
        self.asr.start()
        self.tts.start()
        self._keepalive = asyncio.create_task(self._keep_asr_alive(), name=f"keepalive-{self.session_id}")
        await asyncio.gather(
            self.asr.wait_first_attempt(connect_timeout_s), self.tts.wait_first_attempt(connect_timeout_s)
        )
        info = {
            "session_id": self.session_id,
            "mode": self.config.mode,
            "voice": self.config.voice,
            "sample_rate": self.config.sample_rate,
            "input_sample_rate": INPUT_SAMPLE_RATE,
            "llm": self.responder.label if self.config.mode == "agent" else None,
            "asr": "up" if self.asr.up else "down",
            "tts": "up" if self.tts.up else "down",
        }
        logs.event(log, "session started", session_id=self.session_id, mode=self.config.mode)
        await self.output.ready(info)
        self._ready_sent = True
        for code, message in self._early_errors:  # ready first: an error before it means "no session"
            await self.output.error(code, message, False)
        self._early_errors.clear()
        return info

    async def push_audio(self, samples: np.ndarray) -> None:
        """User audio, float32 mono 16 kHz. Dropped (and counted) while the ASR is away."""
        self._last_audio_at = time.monotonic()
        stream = self.asr.stream
        if stream is None or not self.asr.up:
            self._dropped_audio_s += len(samples) / INPUT_SAMPLE_RATE
            return
        with contextlib.suppress(StreamClosed):
            await stream.send_audio(samples)

    async def end_of_audio(self) -> None:
        """The user's turn ends now: the ASR finalizes what it has (its `final` starts the answer)."""
        if self._speech_end_at is None:
            self._speech_end_at = time.monotonic()
        stream = self.asr.stream
        if stream is None or not self.asr.up:
            await self.output.error(
                f"asr_{self.asr.down_reason}", "the ASR service is not connected: this turn was not heard", False
            )
            return
        with contextlib.suppress(StreamClosed):
            await stream.flush()

    async def user_text(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        now = time.monotonic()
        await self._begin_turn(text, speech_end_at=now, final_at=now)

    def playback_reached(self, segment_id: str) -> None:
        """Everything up to and including `segment_id` was played to the user."""
        if segment_id not in self._unplayed:
            return
        while self._unplayed:
            sid, (_turn, sentence, duration) = self._unplayed.popitem(last=False)
            sentence.played_s += duration
            if sid == segment_id:
                break

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        turn = self._turn
        if turn is not None and turn.task is not None:
            turn.cancelled = True
            turn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await turn.task
        await asyncio.gather(self.asr.close(), self.tts.close(), return_exceptions=True)
        self._requests.clear()
        self._unplayed.clear()
        logs.event(log, "session closed", session_id=self.session_id, dropped_audio_s=round(self._dropped_audio_s, 2))

    async def _keep_asr_alive(self) -> None:
        """A user who listens for a while sends no audio; the ASR must not idle the stream out."""
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            stream = self.asr.stream
            if stream is not None and time.monotonic() - self._last_audio_at > KEEPALIVE_S:
                with contextlib.suppress(StreamClosed):
                    await stream.keepalive()

    # ------------------------------------------------------------------ state
    @property
    def speaking(self) -> bool:
        """The agent is answering, or audio it sent has not been played yet."""
        return (self._turn is not None and not self._turn.cancelled) or bool(self._unplayed)

    # ------------------------------------------------------------------ ASR side
    async def _on_asr_event(self, event: Any) -> None:
        if isinstance(event, asr.SpeechStart):
            self._speech_end_at = None
            await self.output.event("speech_start", timestamp=event.timestamp)
            if self.speaking:
                await self._interrupt("speech_start")
        elif isinstance(event, asr.Partial):
            if event.text:
                await self.output.transcription(event.text, False)
        elif isinstance(event, asr.SpeechEnd):
            self._speech_end_at = time.monotonic()
            await self.output.event("speech_end", timestamp=event.timestamp)
        elif isinstance(event, asr.Final):
            now = time.monotonic()
            speech_end_at = self._speech_end_at or now
            self._speech_end_at = None
            await self.output.transcription(event.text, True)
            if event.text.strip():
                await self._begin_turn(event.text.strip(), speech_end_at=speech_end_at, final_at=now)
            else:
                await self.output.event("empty_turn", reason=event.end_of_turn.reason)
        elif isinstance(event, Error) and event.code != "idle_timeout":  # idle: reconnected quietly
            await self.output.error(f"asr_{event.code}", event.message, False)

    async def _upstream_error(self, code: str, message: str) -> None:
        if self._ready_sent:
            await self.output.error(code, message, False)
        else:
            self._early_errors.append((code, message))

    async def _upstream_up(self, service: str) -> None:
        if self._ready_sent:
            await self.output.event("upstream", service=service, state="up")
        else:  # down and back before the session even started: nothing to report
            self._early_errors = [e for e in self._early_errors if not e[0].startswith(f"{service}_")]

    async def _on_asr_state(self, up: bool, message: str, reason: str = "unavailable") -> None:
        if up:
            await self._upstream_up("asr")
        else:
            await self._upstream_error(f"asr_{reason or 'unavailable'}", message)

    # ------------------------------------------------------------------ turns
    async def _begin_turn(self, text: str, speech_end_at: float, final_at: float) -> None:
        if self._closed:
            return
        if self.speaking:
            await self._interrupt("new_turn")
        turn_id = next(self._turn_ids)
        turn = Turn(turn_id, text, Waterfall(turn_id, self.config.mode))
        turn.waterfall.mark("speech_end", speech_end_at)
        turn.waterfall.mark("asr_final", final_at)
        self._turn = turn
        turn.task = asyncio.create_task(self._run_turn(turn), name=f"turn-{self.session_id}-{turn.id}")

    async def _run_turn(self, turn: Turn) -> None:
        try:
            if self.config.mode == "direct":
                await self._speak(turn, turn.user_text, "echo")
            else:
                await self._answer(turn)
            turn.llm_finished = True
            turn.advanced.set()
            await self._wait_spoken(turn)
            if self.config.mode == "agent" and not turn.recorded:
                self.history.add("assistant", "".join(s.text + " " for s in turn.sentences if s.kind == "answer"))
                turn.recorded = True
            turn.waterfall.mark("done")
            turn.waterfall.observe()
            TURNS.labels(self.config.mode).inc()
            await self.output.done(turn.waterfall.payload(interrupted=False))
        except asyncio.CancelledError:
            raise  # barge-in or close: _interrupt / close report it
        except Exception:
            log.exception("turn failed", extra={"fields": {"session_id": self.session_id}})
            with contextlib.suppress(Exception):
                await self.output.error("internal", "the turn failed unexpectedly", False)
                await self.output.done(turn.waterfall.payload(interrupted=False, failed=True))
        finally:
            if self._turn is turn:
                self._turn = None
                self._last_turn = turn

    async def _answer(self, turn: Turn) -> None:
        self.history.add("user", turn.user_text)
        messages = self.history.for_request()
        ack = self.settings.ack_enabled if self.config.ack is None else self.config.ack
        if ack and self.settings.ack_text:
            await self.output.llm_chunk(self.settings.ack_text, True)
            await self._speak(turn, self.settings.ack_text, "ack")
        splitter = IncrementalText(SENTENCE_MAX_CHARS)
        system = self.config.system_prompt or self.settings.system_prompt
        try:
            async for token in self.responder.stream(system, messages):
                turn.waterfall.mark("llm_first_token")
                await self.output.llm_chunk(token, False)
                for sentence in splitter.feed(token):
                    await self._speak(turn, sentence, "answer")
            for sentence in splitter.flush():
                await self._speak(turn, sentence, "answer")
        except LLMError as err:
            LLM_ERRORS.labels(err.code).inc()
            logs.event(log, "llm failed", level=logging.WARNING, session_id=self.session_id, code=err.code)
            # what was already spoken stays; the rest of the answer is replaced by the apology
            for sentence in splitter.flush():
                await self._speak(turn, sentence, "answer")
            await self.output.error(err.code, err.message, False)
            await self.output.llm_chunk(self.settings.apology_text, False)
            await self._speak(turn, self.settings.apology_text, "apology")

    async def _wait_spoken(self, turn: Turn) -> None:
        """Until every sentence's audio went to the transport (or TTS failed / stalled)."""
        while turn.emit_index < len(turn.sentences):
            turn.advanced.clear()
            try:
                await asyncio.wait_for(turn.advanced.wait(), TTS_STALL_S)
            except asyncio.TimeoutError:
                await self.output.error("tts_timeout", f"no audio from TTS for {TTS_STALL_S:.0f} s", False)
                self._fail_tts(turn)
                return

    # ------------------------------------------------------------------ TTS side
    async def _speak(self, turn: Turn, text: str, kind: str) -> None:
        tts_stream = self.tts.stream
        request_id = f"{self.session_id}-{turn.id}-{len(turn.sentences)}"
        sentence = Sentence(len(turn.sentences), text, request_id, kind)
        turn.sentences.append(sentence)
        if turn.tts_failed:
            sentence.synth_done = True
            self._advance(turn)
            return
        if tts_stream is None or not self.tts.up:
            why = "refused our API key" if self.tts.down_reason == "unauthorized" else "unreachable"
            await self.output.error(f"tts_{self.tts.down_reason}", f"TTS service {why}; answering in text only", False)
            self._fail_tts(turn)
            return
        self._requests[request_id] = (turn, sentence)
        options = {"voice_id": self.config.voice} if self.config.voice else {}
        try:
            await tts_stream.synthesize(text, request_id=request_id, **options)
        except StreamClosed:
            await self.output.error("tts_unavailable", "TTS connection lost; answering in text only", False)
            self._fail_tts(turn)

    def _fail_tts(self, turn: Turn) -> None:
        """No more audio this turn: every pending sentence counts as done so the turn can end."""
        turn.tts_failed = True
        for sentence in turn.sentences:
            sentence.synth_done = True
            sentence.pending.clear()
            self._requests.pop(sentence.request_id, None)
        turn.emit_index = len(turn.sentences)
        turn.advanced.set()

    async def _on_tts_event(self, event: Any) -> None:
        if isinstance(event, AudioFrame):
            entry = self._requests.get(event.request_id)
            if entry is None:
                return  # a cancelled request's tail, or someone else's
            turn, sentence = entry
            if turn.cancelled:
                return
            turn.waterfall.mark("tts_first_audio")
            samples = event.samples()
            sentence.received_s += len(samples) / event.sample_rate
            if sentence.index == turn.emit_index:
                await self._emit(turn, sentence, samples, event.sample_rate)
            else:
                sentence.pending.append((samples, event.sample_rate))
        elif isinstance(event, tts.SynthesisComplete):
            entry = self._requests.pop(event.request_id, None)
            if entry is None:
                return
            turn, sentence = entry
            sentence.synth_done = True
            await self._flush_ready(turn)
        elif isinstance(event, Error) and event.code not in TTS_BENIGN_ERRORS:
            entry = self._requests.pop(event.request_id or "", None)
            await self.output.error(f"tts_{event.code}", event.message, False)
            if entry is not None:
                turn, sentence = entry
                sentence.synth_done = True
                await self._flush_ready(turn)
            elif self._turn is not None and not self._turn.cancelled:
                # an error the TTS could not tie to a request (e.g. an unknown voice at `synthesize`):
                # every sentence of the turn uses the same voice and settings, so none will play
                self._fail_tts(self._turn)

    async def _flush_ready(self, turn: Turn) -> None:
        """Sentences play in order: when one completes, hand over the audio the next ones buffered."""
        while not turn.cancelled and turn.emit_index < len(turn.sentences):
            current = turn.sentences[turn.emit_index]
            while current.pending and not turn.cancelled:
                samples, rate = current.pending.pop(0)
                await self._emit(turn, current, samples, rate)
            if not current.synth_done:
                break
            self._advance(turn)

    def _advance(self, turn: Turn) -> None:
        while (
            turn.emit_index < len(turn.sentences)
            and turn.sentences[turn.emit_index].synth_done
            and not (turn.sentences[turn.emit_index].pending)
        ):
            turn.emit_index += 1
        turn.advanced.set()

    async def _emit(self, turn: Turn, sentence: Sentence, samples: np.ndarray, rate: int) -> None:
        segment_id = f"{turn.id}.{sentence.index}.{next(turn.chunks)}"
        self._unplayed[segment_id] = (turn, sentence, len(samples) / rate)
        if len(self._unplayed) > MAX_UNPLAYED:  # a transport that never reports playback: stay bounded
            _sid, (_t, old, duration) = self._unplayed.popitem(last=False)
            old.played_s += duration
        await self.output.audio(samples, rate, segment_id)
        turn.waterfall.mark("first_audio_sent")

    async def _on_tts_state(self, up: bool, message: str, reason: str = "unavailable") -> None:
        if up:
            await self._upstream_up("tts")
            return
        await self._upstream_error(f"tts_{reason or 'unavailable'}", message)
        turn = self._turn
        if turn is not None and not turn.cancelled:
            self._fail_tts(turn)

    # ------------------------------------------------------------------ barge-in
    async def _interrupt(self, reason: str) -> None:
        """Stop the agent now: cancel Claude and TTS, clear playback, keep only what was heard.
        With no turn running, the cut is in the last turn's queued tail (its `done` already went
        out): the same clear and history cut, and no second `done`."""
        turn = self._turn
        target = turn if turn is not None else self._last_turn
        if turn is not None:
            turn.cancelled = True
            self._turn = None
            self._last_turn = turn
            if turn.task is not None:
                turn.task.cancel()
        cancelled_ids = [rid for rid, (t, _s) in self._requests.items() if t is target]
        for rid in cancelled_ids:
            self._requests.pop(rid, None)
        self._unplayed.clear()
        await self.output.clear()
        stream = self.tts.stream
        if stream is not None:
            for rid in cancelled_ids:
                with contextlib.suppress(StreamClosed):
                    await stream.cancel(rid)
        heard = target.heard_text() if target is not None else ""
        if target is not None and self.config.mode == "agent":
            if target.recorded:
                self.history.replace_last_assistant(heard)
            else:
                self.history.add("assistant", heard)
                target.recorded = True
        INTERRUPTIONS.inc()
        await self.output.event(
            "interrupted",
            reason=reason,
            turn=target.id if target else None,
            heard_chars=len(heard),
            after_done=turn is None,
        )
        if turn is not None:
            if turn.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(turn.task), 2.0)
            turn.waterfall.mark("done")
            await self.output.done(turn.waterfall.payload(interrupted=True))
