"""OpenAI Realtime transcription (`WS /v1/realtime?intent=transcription`) against the running ASR
service, driven by the official `openai` SDK's realtime client, on real speech and Whisper tiny.en."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
import websockets
from openai import AsyncOpenAI

from services.common.audio import encode, resample
from tests.asr.conftest import COMPLETE, COMPLETE_2, FAST_ENV, said
from tests.asr.test_wer import MAX_GAP, MAX_WER
from tests.helpers import corpus
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence
from tests.helpers.wer import corpus_wer, wer

MODEL = "whisper-tiny.en"
CHUNK_S = 0.1
MIB = 1024 * 1024


def client(service) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=service.url + "/v1", api_key="unused-without-API_KEYS")


def connect(service):
    return client(service).realtime.connect(model=MODEL, extra_query={"intent": "transcription"}, max_retries=0)


def at_rate(audio16k, rate: int):
    return resample(audio16k, 16000, rate)


async def next_event(conn, timeout: float = 30.0):
    return await asyncio.wait_for(conn.recv(), timeout)


async def until(conn, kind: str, events: list, timeout: float = 60.0):
    """Events up to and including the first of type `kind` (all kept in `events`)."""
    while True:
        event = await next_event(conn, timeout)
        events.append(event)
        if event.type == kind:
            return event


async def append(conn, audio, encoding: str, rate: int) -> None:
    step = int(CHUNK_S * rate)
    for start in range(0, len(audio), step):
        chunk = encode(audio[start : start + step], encoding)
        await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await asyncio.sleep(0)


def session(fmt: dict, turn_detection) -> dict:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": fmt,
                "transcription": {"model": MODEL, "language": "en"},
                "turn_detection": turn_detection,
            }
        },
    }


async def test_server_vad_two_turns_with_the_sdk(asr):
    speech = at_rate(concat(silence(0.4), said(COMPLETE), silence(1.2), said(COMPLETE_2), silence(1.2)), 24000)
    async with connect(asr) as conn:
        created = await next_event(conn)
        assert created.type == "session.created" and created.session.type == "transcription"
        vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
        await conn.session.update(session=session({"type": "audio/pcm", "rate": 24000}, vad))
        updated = await next_event(conn)
        assert updated.type == "session.updated"
        assert updated.session.audio.input.turn_detection.silence_duration_ms == 500
        await append(conn, speech, "pcm_s16le", 24000)
        events: list = []
        first = await until(conn, "conversation.item.input_audio_transcription.completed", events)
        second = await until(conn, "conversation.item.input_audio_transcription.completed", events)
    kinds = [e.type for e in events if not e.type.endswith(".delta")]
    turn = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert kinds == turn + turn
    for done in (first, second):
        assert {e.item_id for e in events if getattr(e, "item_id", None) == done.item_id} == {done.item_id}
        assert [e.type for e in events if getattr(e, "item_id", None) == done.item_id][-1] == done.type
    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    assert committed[0].previous_item_id is None and committed[1].previous_item_id == committed[0].item_id
    started = [e for e in events if e.type == "input_audio_buffer.speech_started"]
    assert 300 <= started[0].audio_start_ms <= 600
    assert corpus_wer([(COMPLETE, first.transcript), (COMPLETE_2, second.transcript)]) <= 0.2
    metrics = (await asyncio.to_thread(httpx.get, asr.url + "/metrics")).text  # labelled with this transport
    assert 'voice_asr_audio_seconds_total{source="realtime"}' in metrics
    for done in (first, second):  # deltas only append, and never run past the final text
        deltas = "".join(e.delta for e in events if e.type.endswith(".delta") and e.item_id == done.item_id)
        assert done.transcript.startswith(deltas)
        assert done.usage.type == "duration" and done.usage.seconds > 1.0


async def test_semantic_vad_ends_a_complete_sentence_through_smart_turn(asr):
    speech = at_rate(concat(silence(0.3), said(COMPLETE), silence(1.0)), 24000)
    async with connect(asr) as conn:
        await next_event(conn)
        await conn.session.update(session=session({"type": "audio/pcm"}, {"type": "semantic_vad", "eagerness": "high"}))
        assert (await next_event(conn)).type == "session.updated"
        await append(conn, speech, "pcm_s16le", 24000)
        events: list = []
        done = await until(conn, "conversation.item.input_audio_transcription.completed", events)
    assert wer(COMPLETE, done.transcript) <= 0.25, done.transcript
    assert "input_audio_buffer.committed" in [e.type for e in events]


@pytest.mark.parametrize("fmt,encoding", [("audio/pcmu", "mulaw"), ("audio/pcma", "alaw")])
async def test_client_commits_g711_audio_without_turn_detection(asr, fmt, encoding):
    # 8 kHz telephone band: two sentences, so one misheard word does not decide the threshold
    speech = at_rate(concat(silence(0.3), said(COMPLETE), silence(0.4), said(COMPLETE_2), silence(0.3)), 8000)
    async with connect(asr) as conn:
        await next_event(conn)
        await conn.session.update(session=session({"type": fmt}, None))
        updated = await next_event(conn)
        assert updated.session.audio.input.format.type == fmt and updated.session.audio.input.turn_detection is None
        await append(conn, speech, encoding, 8000)
        await conn.input_audio_buffer.commit()
        events: list = []
        done = await until(conn, "conversation.item.input_audio_transcription.completed", events)
    kinds = [e.type for e in events if not e.type.endswith(".delta")]
    assert kinds == ["input_audio_buffer.committed", "conversation.item.input_audio_transcription.completed"]
    assert wer(f"{COMPLETE} {COMPLETE_2}", done.transcript) <= 0.25, done.transcript


async def expect_error(conn, code: str, param: str | None = None, event_id: str | None = None):
    event = await next_event(conn)
    assert event.type == "error", event
    assert event.error.code == code, event.error
    assert event.error.type == "invalid_request_error" and event.error.message
    if param is not None:
        assert event.error.param == param, event.error
    if event_id is not None:
        assert event.error.event_id == event_id
    return event


async def test_bad_events_get_openai_errors_and_the_session_goes_on(asr):
    async with connect(asr) as conn:
        await next_event(conn)
        await conn.send_raw("not json")
        await expect_error(conn, "bad_json")
        await conn.send_raw("[" * 10_000 + "]" * 10_000)
        await expect_error(conn, "bad_json")
        await conn.send_raw('{"type": "session.update", "session": {"type": "transcription", "x": "\\ud800"}}')
        await expect_error(conn, "bad_json")
        await conn.send_raw(json.dumps({"type": "response.create", "event_id": "evt_1"}))
        await expect_error(conn, "invalid_value", "type", "evt_1")
        await conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "%%%", "event_id": "evt_2"}))
        await expect_error(conn, "invalid_value", "audio", "evt_2")
        await conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": 12}))
        await expect_error(conn, "invalid_type", "audio")
        await conn.send_raw(json.dumps({"type": "input_audio_buffer.commit", "extra": 1}))
        await expect_error(conn, "unknown_parameter", "extra")
        await conn.session.update(session=session({"type": "audio/pcm", "rate": 16000}, None))
        await expect_error(conn, "invalid_value", "session.audio.input.format.rate")
        await conn.session.update(session=session({"type": "audio/flac"}, None))
        await expect_error(conn, "invalid_value", "session.audio.input.format.type")
        await conn.session.update(session=session({"type": "audio/pcm"}, {"type": "psychic"}))
        await expect_error(conn, "invalid_value", "session.audio.input.turn_detection.type")
        await conn.session.update(session={"type": "realtime"})
        await expect_error(conn, "invalid_value", "session.type")
        await conn.send_raw(json.dumps({"type": "session.update", "session": {"type": "transcription", "tools": []}}))
        await expect_error(conn, "unknown_parameter", "session.tools")
        # odd-length PCM and too little audio to commit
        await conn.send_raw(
            json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\1").decode()})
        )
        assert (await next_event(conn)).error.code == "bad_frame"
        await conn.input_audio_buffer.append(audio=base64.b64encode(b"\0\0" * 240).decode())  # 10 ms
        await conn.input_audio_buffer.commit()
        await expect_error(conn, "input_audio_buffer_commit_empty")
        # the audio settings are fixed once audio has flowed; the session keeps them
        await conn.session.update(session=session({"type": "audio/pcmu"}, None))
        await expect_error(conn, "session_update_too_late", "session")
        noise = {"type": "transcription", "audio": {"input": {"noise_reduction": {"type": "far_field"}}}}
        await conn.session.update(session=noise)  # an echoed-only field: taken, no audio setting changes
        updated = await next_event(conn)
        assert updated.type == "session.updated" and updated.session.audio.input.noise_reduction.type == "far_field"
        assert updated.session.audio.input.format.type == "audio/pcm"
        # binary frames are not the protocol
        await conn.send_raw(b"\x00\x01")
        assert (await next_event(conn)).error.code == "invalid_value"
        # clear, then real speech still comes through on the default server VAD
        await conn.input_audio_buffer.clear()
        assert (await next_event(conn)).type == "input_audio_buffer.cleared"
        await append(conn, at_rate(concat(silence(0.3), said(COMPLETE), silence(1.0)), 24000), "pcm_s16le", 24000)
        events: list = []
        done = await until(conn, "conversation.item.input_audio_transcription.completed", events)
    assert wer(COMPLETE, done.transcript) <= 0.25, done.transcript


async def test_a_message_over_max_frame_bytes_is_dropped_with_an_error_and_the_session_goes_on(asr):
    """MAX_FRAME_BYTES (1 MiB by default) bounds each message before it is read: an append over
    it gets an OpenAI `error` `frame_too_large` (its event_id unknown: the message was never
    parsed, so not the previous event's either) and is dropped; the audio appended before and after
    it is one turn, transcribed whole."""
    speech = at_rate(concat(silence(0.3), said(COMPLETE), silence(0.3)), 24000)
    half = len(speech) // 2
    async with connect(asr) as conn:
        await next_event(conn)
        await conn.session.update(session=session({"type": "audio/pcm", "rate": 24000}, None))
        assert (await next_event(conn)).type == "session.updated"
        await append(conn, speech[:half], "pcm_s16le", 24000)
        noise = {"type": "transcription", "audio": {"input": {"noise_reduction": {"type": "near_field"}}}}
        await conn.session.update(session=noise, event_id="evt_update")  # the event just before
        assert (await next_event(conn)).type == "session.updated"
        oversized = base64.b64encode(b"\x10\x00" * 400_000).decode()  # 800 kB of PCM, 1.07 MB as base64
        await conn.input_audio_buffer.append(audio=oversized, event_id="evt_big")
        error = await expect_error(conn, "frame_too_large")
        assert "MAX_FRAME_BYTES" in error.error.message and error.error.event_id is None, error.error
        await append(conn, speech[half:], "pcm_s16le", 24000)
        await conn.input_audio_buffer.commit()
        events: list = []
        done = await until(conn, "conversation.item.input_audio_transcription.completed", events)
    kinds = [e.type for e in events if not e.type.endswith(".delta")]
    assert kinds == ["input_audio_buffer.committed", "conversation.item.input_audio_transcription.completed"]
    assert wer(COMPLETE, done.transcript) <= 0.25, done.transcript
    assert done.usage.seconds < 5.0  # the short clip's turn, not the dropped message's 16.7 s


@pytest.fixture(scope="module")
def big_frames(models_dir):
    service = ServiceProcess("asr", env={**FAST_ENV, "MAX_FRAME_BYTES": str(2 * MIB)}, label="asr-realtime-frames")
    yield service.start()
    service.stop()


async def test_a_raised_max_frame_bytes_is_the_bound_of_an_append(big_frames):
    """The audio travels inside the JSON here, so MAX_FRAME_BYTES, not a JSON size of its own, bounds
    an append: with 2 MiB, a 1.5 MB append (23 s of silence) is taken whole, a 2.2 MB one is refused."""
    async with connect(big_frames) as conn:
        await next_event(conn)
        await conn.session.update(session=session({"type": "audio/pcm", "rate": 24000}, None))
        assert (await next_event(conn)).type == "session.updated"
        await conn.input_audio_buffer.append(audio=base64.b64encode(b"\0\0" * 825_000).decode())  # 2.2 MB as base64
        error = await expect_error(conn, "frame_too_large")
        assert str(2 * MIB) in error.error.message, error.error
        taken = b"\0\0" * 550_000  # 22.917 s at 24 kHz; 1.47 MB as base64, over 1 MiB
        await conn.input_audio_buffer.append(audio=base64.b64encode(taken).decode())
        await conn.input_audio_buffer.commit()
        committed = await next_event(conn)
        assert committed.type == "input_audio_buffer.committed", committed
        empty = await next_event(conn)
    assert empty.type == "conversation.item.input_audio_transcription.completed", empty
    assert empty.transcript == "" and abs(empty.usage.seconds - 550_000 / 24000) < 0.01, empty.usage


async def test_a_message_over_the_transport_cap_closes_1009(asr):
    """Past 4 x MAX_FRAME_BYTES the WebSocket layer itself refuses the message (docs/security.md):
    close 1009 (message too big) before the message reaches the session."""
    async with websockets.connect(asr.ws_url + "/v1/realtime?intent=transcription") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "session.created"
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (5 * 1024 * 1024)}))
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1009


async def test_wrong_intent_gets_an_error_and_close_1008(asr):
    async with websockets.connect(asr.ws_url + "/v1/realtime?model=x") as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert event["type"] == "error" and event["error"]["code"] == "invalid_intent"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1008


async def test_piper_stream_turn_by_turn_with_server_vad(asr):
    """The project's speech set (tests/helpers/corpus.py): one Piper stream of five sentences with
    0.8-1.6 s gaps; server VAD with 500 ms of silence gives one item per sentence, and the words
    hold to the stream test's bound (Piper's corpus WER bound plus the service's allowed gap)."""
    stream = corpus.streams("piper")[0]
    async with connect(asr) as conn:
        await next_event(conn)
        vad = {"type": "server_vad", "silence_duration_ms": 500}
        await conn.session.update(session=session({"type": "audio/pcm", "rate": 24000}, vad))
        assert (await next_event(conn)).type == "session.updated"
        # the stream ends 0.5 s after its last word: a second more, so the VAD's 500 ms are reached
        await append(conn, at_rate(concat(stream.audio, silence(1.0)), 24000), "pcm_s16le", 24000)
        events: list = []
        completed = "conversation.item.input_audio_transcription.completed"
        done = [await until(conn, completed, events) for _ in stream.clips]
        # the VAD committed every sentence; what is left is the trailing silence: an empty item
        await conn.input_audio_buffer.commit()
        tail: list = []
        empty = await until(conn, completed, tail)
        assert [e.type for e in tail] == ["input_audio_buffer.committed", completed] and empty.transcript == ""
    pairs = [(clip.text, item.transcript) for clip, item in zip(stream.clips, done, strict=True)]
    error = corpus_wer(pairs)
    print(f"\n[wer] realtime piper stream 0: {error:.2%}")
    assert error <= MAX_WER["piper"] + MAX_GAP, pairs
