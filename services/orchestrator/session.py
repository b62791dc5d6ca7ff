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

Where the parts live: the client's choices in session_config.py, turns and sentences (what was
heard) in turns.py, the ordered hand-over of TTS audio and the playback bookkeeping in
speech_queue.py, the `AgentOutput` protocol in output.py; this module is the conversation itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from clients.voice import ASRStream, AudioFrame, Backoff, StreamClosed, TTSStream
from services.common import logs
from services.common.budget import Budget, BufferFull
from services.common.protocol import asr, tts
from services.common.protocol.base import Error
from services.common.text import IncrementalText  # the same splitter TTS uses: one rule for both

from . import metrics
from .config import OrchestratorConfig
from .llm import Conversation, DemoResponder, LLMError, Responder
from .output import AgentOutput
from .session_config import INPUT_SAMPLE_RATE, MODES, Mode, SessionConfig, asr_config, parse_session_config
from .speech_queue import MAX_UNPLAYED, SpeechQueue
from .turns import Sentence, SentenceKind, Turn
from .upstream import DownReason, Upstream
from .waterfall import Waterfall

log = logging.getLogger("voice.orchestrator.session")

__all__ = [  # the session's public names, including those that moved to their own modules
    "INPUT_SAMPLE_RATE",
    "MAX_UNPLAYED",
    "MODES",
    "AgentOutput",
    "AgentSession",
    "Mode",
    "Sentence",
    "SentenceKind",
    "SessionConfig",
    "Turn",
    "parse_session_config",
]

SENTENCE_MAX_CHARS = 250  # longer runs are cut at a clause so speech can start
TTS_STALL_S = 30.0  # a turn waiting this long for TTS progress gives up instead of hanging
KEEPALIVE_S = 15.0  # ASR keepalive while no audio flows
# TTS errors that are no news: a cancel racing the end of its request, the idle close
TTS_BENIGN_ERRORS = {"nothing_to_cancel", "idle_timeout"}


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
        asr_cfg = asr_config(self.config)
        tts_cfg = {"sample_rate": self.config.sample_rate, "encoding": "pcm_f32le"}
        backoff = Backoff(base_s=0.2, max_s=settings.upstream_retry_max_s, max_attempts=None)
        self.asr = Upstream("asr", lambda: asr_factory(asr_cfg), self._on_asr_event, self._on_asr_state, backoff,
                            self.session_id)  # fmt: skip
        self.tts = Upstream("tts", lambda: tts_factory(tts_cfg), self._on_tts_event, self._on_tts_state, backoff,
                            self.session_id)  # fmt: skip
        self._turn: Turn | None = None
        self._last_turn: Turn | None = None
        self._turn_ids = itertools.count(1)
        self.speech = SpeechQueue(self.output.audio, self.session_id, budget=Budget.from_config(settings.common))
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
            "llm": self.responder.label if self.config.mode == Mode.AGENT else None,
            "asr": "up" if self.asr.up else "down",
            "tts": "up" if self.tts.up else "down",
            **self._models(),
        }
        logs.event(log, "session started", session_id=self.session_id, mode=self.config.mode)
        await self.output.ready(info)
        self._ready_sent = True
        for code, message in self._early_errors:  # ready first: an error before it means "no session"
            await self.output.error(code, message, False)
        self._early_errors.clear()
        return info

    def _models(self) -> dict[str, str]:
        """Which models the upstreams run, from their own `ready` events, for the page to show."""
        asr_ready = getattr(self.asr.stream, "ready", None)
        tts_ready = getattr(self.tts.stream, "ready", None)
        return {
            "asr_model": str((getattr(asr_ready, "config", None) or {}).get("model") or ""),
            "tts_engine": getattr(tts_ready, "engine", "") or "",
            "tts_model": getattr(tts_ready, "model", "") or "",
        }

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
        self.speech.played(segment_id)

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
        self.speech.clear()
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
        return (self._turn is not None and not self._turn.cancelled) or self.speech.unplayed

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

    async def _on_asr_state(self, up: bool, message: str, reason: str = DownReason.UNAVAILABLE) -> None:
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
            if self.config.mode == Mode.DIRECT:
                await self._speak(turn, turn.user_text, SentenceKind.ECHO)
            else:
                await self._answer(turn)
            turn.llm_finished = True
            turn.advanced.set()
            await self._wait_spoken(turn)
            if self.config.mode == Mode.AGENT and not turn.recorded:
                self.history.add("assistant", turn.answer_text())
                turn.recorded = True
            turn.waterfall.mark("done")
            turn.waterfall.observe()
            metrics.TURNS.labels(self.config.mode).inc()
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
            await self._speak(turn, self.settings.ack_text, SentenceKind.ACK)
        splitter = IncrementalText(SENTENCE_MAX_CHARS)
        system = self.config.system_prompt or self.settings.system_prompt
        try:
            async for token in self.responder.stream(system, messages):
                turn.waterfall.mark("llm_first_token")
                await self.output.llm_chunk(token, False)
                for sentence in splitter.feed(token):
                    await self._speak(turn, sentence, SentenceKind.ANSWER)
            for sentence in splitter.flush():
                await self._speak(turn, sentence, SentenceKind.ANSWER)
        except LLMError as err:
            metrics.LLM_ERRORS.labels(err.code).inc()
            logs.event(log, "llm failed", level=logging.WARNING, session_id=self.session_id, code=err.code)
            # what was already spoken stays; the rest of the answer is replaced by the apology
            for sentence in splitter.flush():
                await self._speak(turn, sentence, SentenceKind.ANSWER)
            await self.output.error(err.code, err.message, False)
            await self.output.llm_chunk(self.settings.apology_text, False)
            await self._speak(turn, self.settings.apology_text, SentenceKind.APOLOGY)

    async def _wait_spoken(self, turn: Turn) -> None:
        """Until every sentence's audio went to the transport (or TTS failed / stalled)."""
        while turn.emit_index < len(turn.sentences):
            turn.advanced.clear()
            try:
                await asyncio.wait_for(turn.advanced.wait(), TTS_STALL_S)
            except asyncio.TimeoutError:
                await self.output.error("tts_timeout", f"no audio from TTS for {TTS_STALL_S:.0f} s", False)
                self.speech.fail(turn)
                return

    # ------------------------------------------------------------------ TTS side
    async def _speak(self, turn: Turn, text: str, kind: SentenceKind) -> None:
        tts_stream = self.tts.stream
        sentence = self.speech.add(turn, text, kind)
        if turn.tts_failed:
            self.speech.skip(turn, sentence)
            return
        if tts_stream is None or not self.tts.up:
            why = "refused our API key" if self.tts.down_reason == DownReason.UNAUTHORIZED else "unreachable"
            await self.output.error(f"tts_{self.tts.down_reason}", f"TTS service {why}; answering in text only", False)
            self.speech.fail(turn)
            return
        self.speech.track(turn, sentence)
        options = {"voice_id": self.config.voice} if self.config.voice else {}
        try:
            await tts_stream.synthesize(text, request_id=sentence.request_id, **options)
        except StreamClosed:
            await self.output.error("tts_unavailable", "TTS connection lost; answering in text only", False)
            self.speech.fail(turn)

    async def _on_tts_event(self, event: Any) -> None:
        if isinstance(event, AudioFrame):
            try:
                await self.speech.audio(event.request_id, event.samples(), event.sample_rate)
            except BufferFull as exc:  # TTS ran far ahead of playback: stop this answer, keep what went out
                await self.output.error(exc.code, exc.message, False)
                turn = self._turn
                if turn is not None:
                    await self._cancel_tts(self.speech.pending_requests(turn))
                    self.speech.fail(turn)
        elif isinstance(event, tts.SynthesisComplete):
            await self.speech.complete(event.request_id)
        elif isinstance(event, Error) and event.code not in TTS_BENIGN_ERRORS:
            entry = self.speech.pop(event.request_id or "")
            await self.output.error(f"tts_{event.code}", event.message, False)
            if entry is not None:
                await self.speech.finish(*entry)
            elif self._turn is not None and not self._turn.cancelled:
                # an error the TTS could not tie to a request (e.g. an unknown voice at `synthesize`):
                # every sentence of the turn uses the same voice and settings, so none will play
                self.speech.fail(self._turn)

    async def _on_tts_state(self, up: bool, message: str, reason: str = DownReason.UNAVAILABLE) -> None:
        if up:
            await self._upstream_up("tts")
            return
        await self._upstream_error(f"tts_{reason or 'unavailable'}", message)
        turn = self._turn
        if turn is not None and not turn.cancelled:
            self.speech.fail(turn)

    async def _cancel_tts(self, request_ids: list[str]) -> None:
        stream = self.tts.stream
        if stream is not None:
            for rid in request_ids:
                with contextlib.suppress(StreamClosed):
                    await stream.cancel(rid)

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
        cancelled_ids = self.speech.cancel(target)
        await self.output.clear()
        await self._cancel_tts(cancelled_ids)
        heard = target.heard_text() if target is not None else ""
        if target is not None and self.config.mode == Mode.AGENT:
            if target.recorded:
                self.history.replace_last_assistant(heard)
            else:
                self.history.add("assistant", heard)
                target.recorded = True
        metrics.INTERRUPTIONS.inc()
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
