"""OpenAI Realtime transcription when the engine fails for real: the ASR service with
INFERENCE_TIMEOUT_S far below what one Whisper call takes (the EngineGuard's timeout,
services/common/breaker.py), so every transcription overruns it and the core surfaces
`inference_timeout` for each committed turn. The breaker is kept closed (BREAKER_FAILURES high)
so every turn fails the same way. Driven by the official `openai` SDK's realtime client."""

from __future__ import annotations

import pytest

from tests.asr.conftest import COMPLETE, COMPLETE_2, FAST_ENV, said
from tests.asr.test_realtime import append, at_rate, connect, next_event, session, until
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence

FAILED = "conversation.item.input_audio_transcription.failed"
COMPLETED = "conversation.item.input_audio_transcription.completed"
COMMITTED = "input_audio_buffer.committed"


@pytest.fixture(scope="module")
def failing(models_dir, espeak):
    env = {**FAST_ENV, "INFERENCE_TIMEOUT_S": "0.001", "BREAKER_FAILURES": "1000"}
    service = ServiceProcess("asr", env=env, label="asr-realtime-failing").start()
    yield service
    service.stop()


async def turn_fails(conn, text: str) -> tuple[object, object]:
    """Speech, then commit: the item is committed, then its transcription fails (never completes)."""
    await append(conn, at_rate(concat(silence(0.3), said(text), silence(0.3)), 24000), "pcm_s16le", 24000)
    await conn.input_audio_buffer.commit()
    events: list = []
    failed = await until(conn, FAILED, events)
    kinds = [e.type for e in events]
    assert kinds == [COMMITTED, FAILED], kinds  # no delta either: the partials failed too
    return events[0], failed


async def test_a_failed_transcription_is_reported_on_its_item_and_the_session_goes_on(failing):
    async with connect(failing) as conn:
        assert (await next_event(conn)).type == "session.created"
        await conn.session.update(session=session({"type": "audio/pcm", "rate": 24000}, None))
        assert (await next_event(conn)).type == "session.updated"

        committed, failed = await turn_fails(conn, COMPLETE)
        assert failed.item_id == committed.item_id and failed.content_index == 0
        assert failed.error.type == "server_error" and failed.error.code == "inference_timeout"
        assert failed.error.message and failed.error.param is None

        # the session goes on: a second turn fails on its own item, chained to the first
        committed_2, failed_2 = await turn_fails(conn, COMPLETE_2)
        assert committed_2.item_id != committed.item_id and committed_2.previous_item_id == committed.item_id
        assert failed_2.item_id == committed_2.item_id and failed_2.error.code == "inference_timeout"

        # what needs no engine still works: bad input gets its error, silence commits an empty item,
        # and session.update is answered
        await conn.input_audio_buffer.append(audio="%%%", event_id="evt_bad")
        error = await next_event(conn)
        assert error.type == "error" and error.error.code == "invalid_value" and error.error.event_id == "evt_bad"
        await append(conn, at_rate(silence(0.5), 24000), "pcm_s16le", 24000)
        await conn.input_audio_buffer.commit()
        events: list = []
        empty = await until(conn, COMPLETED, events)
        assert [e.type for e in events] == [COMMITTED, COMPLETED] and empty.transcript == ""
        assert events[0].previous_item_id == committed_2.item_id
        noise = {"type": "transcription", "audio": {"input": {"noise_reduction": {"type": "near_field"}}}}
        await conn.session.update(session=noise)
        updated = await next_event(conn)
        assert updated.type == "session.updated" and updated.session.audio.input.noise_reduction.type == "near_field"
