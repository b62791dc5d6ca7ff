"""The ASR session core with no server and no socket: typed inputs in, typed outputs out, on the
real models (Silero, Smart Turn, Whisper tiny.en) and real espeak speech."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from services.asr.append_only import AppendOnlyText
from services.asr.core import (
    AudioIn,
    Clear,
    Closed,
    Configure,
    End,
    Flush,
    SessionCore,
    SessionState,
    TurnCommitted,
)
from services.common.audio import encode
from services.common.protocol.asr import Final, Ready, SpeechEnd, SpeechStart, StreamConfig, TurnDetection
from services.common.protocol.base import Error, ProtocolError
from tests.asr.conftest import COMPLETE, said
from tests.helpers.speech import concat, silence
from tests.helpers.wer import wer


class Outputs:
    """What the core sent, in order (the `send` a transport would pass)."""

    def __init__(self) -> None:
        self.events: list = []
        self.closed = asyncio.Event()

    async def send(self, event) -> None:
        self.events.append(event)
        if isinstance(event, Closed):
            self.closed.set()

    def of(self, cls) -> list:
        return [e for e in self.events if isinstance(e, cls)]


def pcm(audio) -> bytes:
    return encode(audio, "pcm_s16le")


async def run_core(engines, inputs, configure: Configure | None = None) -> Outputs:
    core = SessionCore(engines.config, engines)
    out = Outputs()
    core.open(out.send)
    if configure is not None:
        await core.handle(configure)
    for event in inputs:
        await core.handle(event)
    await asyncio.wait_for(out.closed.wait(), 60)
    await core.close()
    assert core.state == SessionState.CLOSED
    return out


async def test_one_turn_in_order_with_the_words(engines):
    speech = concat(silence(0.3), said(COMPLETE), silence(0.3))
    none = Configure(StreamConfig(turn_detection=TurnDetection(mode="none")))
    out = await run_core(
        engines, [AudioIn(pcm(speech[i : i + 3200])) for i in range(0, len(speech), 3200)] + [End()], none
    )
    kinds = [type(e).__name__ for e in out.events if type(e).__name__ != "Partial"]
    assert kinds == ["Ready", "Ready", "SpeechStart", "SpeechEnd", "TurnCommitted", "Final", "Closed"]
    (final,) = out.of(Final)
    assert wer(COMPLETE, final.text) <= 0.25, final.text
    assert final.end_of_turn.reason == "end"
    (committed,) = out.of(TurnCommitted)
    assert committed.turn_id == 1 and committed.start == final.start
    assert out.of(Closed) == [Closed(1000, "end of stream")]
    assert all(e.session_id == out.events[0].session_id for e in out.of(Ready) + out.of(SpeechStart))


async def test_vad_mode_with_session_knobs_finalizes_on_silence(engines):
    """Configure's per-session VAD threshold and pad (what OpenAI server_vad sets) take effect."""
    speech = concat(silence(0.3), said(COMPLETE), silence(0.8))
    vad = Configure(StreamConfig(turn_detection=TurnDetection(mode="vad", stop_secs=0.5)), 0.6, 0.1)
    out = await run_core(engines, [AudioIn(pcm(speech)), End()], vad)
    (final,) = out.of(Final)
    assert final.end_of_turn.reason == "vad"
    assert wer(COMPLETE, final.text) <= 0.25, final.text
    assert out.of(SpeechEnd)[0].timestamp < len(speech) / 16000 - 0.4


async def test_client_mistakes_raise_coded_errors_and_the_core_goes_on(engines):
    core = SessionCore(engines.config, engines)
    out = Outputs()
    core.open(out.send)
    core.configure(Configure(StreamConfig(turn_detection=TurnDetection(mode="none"))))
    for bad, code in ((b"\x01\x02\x03", "bad_frame"), (b"", "empty_frame")):
        with pytest.raises(ProtocolError) as info:
            await core.audio(bad)
        assert info.value.code == code
        core.report(info.value)
    await core.audio(pcm(silence(0.2)))
    with pytest.raises(ProtocolError) as info:
        core.configure(Configure(replace(StreamConfig(), sample_rate=8000)))
    assert info.value.code == "config_too_late"
    assert await core.flush() is False  # no speech, no turn to end
    await core.audio(pcm(concat(said(COMPLETE), silence(0.3))))
    assert await core.flush() is True
    await core.end()
    with pytest.raises(ProtocolError) as info:
        await core.audio(pcm(silence(0.1)))
    assert info.value.code == "ended"
    await asyncio.wait_for(out.closed.wait(), 60)
    await core.close()
    errors = [e.code for e in out.of(Error)]
    assert errors == ["bad_frame", "empty_frame"]
    (final,) = out.of(Final)
    assert final.end_of_turn.reason == "flush" and wer(COMPLETE, final.text) <= 0.25


async def test_clear_drops_the_open_turn_without_a_final(engines):
    none = Configure(StreamConfig(turn_detection=TurnDetection(mode="none")))
    out = await run_core(engines, [AudioIn(pcm(concat(silence(0.3), said(COMPLETE)))), Clear(), Flush(), End()], none)
    assert out.of(SpeechStart) and not out.of(Final) and not out.of(TurnCommitted)
    assert out.events[-1] == Closed(1000, "end of stream")


def test_append_only_text_holds_back_the_last_word_of_a_partial():
    text = AppendOnlyText()
    assert text.partial("How are you doing?") == "How are you "
    assert text.partial("How are you doing today") == "doing "
    assert text.partial("How are we") == ""  # disagrees with what was sent: nothing more
    assert text.final("How are you doing today?") == "today?"
    assert text.sent == "How are you doing today?"
    other = AppendOnlyText()
    assert other.partial("Hello") == ""  # one word: nothing stable yet
    assert other.final("Hello there.") == "Hello there."
