"""The Wyoming ASR server inside the running ASR service, driven by the wyoming package's own
`AsyncTcpClient`: a Home Assistant exchange (describe, then one utterance) on real speech and
Whisper tiny.en, and bad input answered with Wyoming `error` events on a connection that goes on."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong

from services.common.audio import encode
from tests.asr.conftest import COMPLETE, FAST_ENV, said
from tests.helpers import corpus
from tests.helpers.procs import ServiceProcess, free_port
from tests.helpers.speech import concat, silence
from tests.helpers.wer import wer

RATE, WIDTH, CHANNELS = 16000, 2, 1


@pytest.fixture(scope="module")
def wyoming(models_dir, espeak):
    port = free_port()
    service = ServiceProcess("asr", env={**FAST_ENV, "ASR_WYOMING_PORT": str(port)}, label="asr-wyoming").start()
    service.wyoming_port = port
    yield service
    service.stop()


async def read(client, timeout: float = 30.0) -> Event:
    event = await asyncio.wait_for(client.read_event(), timeout)
    assert event is not None, "the server closed the connection"
    return event


async def utterance(client, audio, chunk_s: float = 0.1) -> None:
    await client.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
    step = int(chunk_s * RATE)
    for start in range(0, len(audio), step):
        pcm = encode(audio[start : start + step], "pcm_s16le")
        await client.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS, audio=pcm).event())
    await client.write_event(AudioStop().event())


async def transcript_events(client) -> list[Event]:
    events = []
    while not events or not TranscriptStop.is_type(events[-1].type):
        events.append(await read(client, 60))
    return events


async def test_home_assistant_exchange(wyoming):
    """What Home Assistant's Wyoming integration does: describe on one connection, then per
    voice command a connection with transcribe + audio-start/chunks/audio-stop."""
    async with AsyncTcpClient("127.0.0.1", wyoming.wyoming_port) as client:
        await client.write_event(Describe().event())
        described = Info.from_event(await read(client))
    (program,) = described.asr
    assert program.installed and program.supports_transcript_streaming
    (model,) = program.models
    assert model.name == "whisper-tiny.en" and model.languages == ["en"]

    # a voice command from the fixed speech set, in the real Piper voice
    command = next(c for c in corpus.sentences("piper") if "lights" in c.text)
    async with AsyncTcpClient("127.0.0.1", wyoming.wyoming_port) as client:
        await client.write_event(Transcribe(language="en").event())
        await utterance(client, command.padded(0.3, 0.3))
        events = await transcript_events(client)
    kinds = [e.type for e in events]
    assert kinds[0] == "transcript-start" and kinds[-2:] == ["transcript", "transcript-stop"]
    assert set(kinds[1:-2]) <= {"transcript-chunk"}
    assert TranscriptStart.from_event(events[0]).language == "en"
    text = Transcript.from_event(events[-2]).text
    assert wer(command.text, text) <= 0.25, text
    metrics = (await asyncio.to_thread(httpx.get, wyoming.url + "/metrics")).text
    assert 'voice_asr_audio_seconds_total{source="wyoming"}' in metrics
    streamed = "".join(TranscriptChunk.from_event(e).text for e in events if TranscriptChunk.is_type(e.type))
    assert streamed.strip() == text  # the chunks add up to the transcript


async def test_bad_input_gets_wyoming_errors_and_the_connection_goes_on(wyoming):
    async with AsyncTcpClient("127.0.0.1", wyoming.wyoming_port) as client:

        async def expect_error(code: str) -> None:
            event = await read(client)
            assert Error.is_type(event.type), event
            error = Error.from_event(event)
            assert error.code == code and error.text, error

        pcm = encode(silence(0.1), "pcm_s16le")
        await client.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS, audio=pcm).event())
        await expect_error("not_started")
        await client.write_event(AudioStop().event())
        await expect_error("not_started")
        await client.write_event(Event(type="synthesize", data={"text": "hi"}))
        await expect_error("unknown_event")
        await client.write_event(Transcribe(language="english please").event())
        await expect_error("bad_language")
        # a format we do not take: one error, its chunks and stop are dropped quietly
        await client.write_event(AudioStart(rate=RATE, width=4, channels=2).event())
        await expect_error("unsupported_format")
        await client.write_event(AudioChunk(rate=RATE, width=4, channels=2, audio=b"\0" * 64).event())
        await client.write_event(AudioStop().event())
        await client.write_event(Ping(text="still there?").event())
        assert Pong.from_event(await read(client)).text == "still there?"
        # an utterance with a chunk in the wrong format and an odd-length chunk still transcribes
        speech = concat(silence(0.3), said(COMPLETE), silence(0.3))
        await client.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
        await client.write_event(AudioChunk(rate=8000, width=WIDTH, channels=CHANNELS, audio=pcm).event())
        await expect_error("format_mismatch")
        await client.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS, audio=b"\1\2\3").event())
        await expect_error("bad_frame")
        await client.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
        await expect_error("already_started")
        step = RATE // 10
        for start in range(0, len(speech), step):
            chunk = encode(speech[start : start + step], "pcm_s16le")
            await client.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS, audio=chunk).event())
        await client.write_event(AudioStop().event())
        events = await transcript_events(client)
    text = Transcript.from_event(next(e for e in events if Transcript.is_type(e.type))).text
    assert wer(COMPLETE, text) <= 0.25, text


async def test_malformed_bytes_on_the_wire(wyoming):
    """Below the package's client: a header that is not JSON is answered and skipped; a payload
    length past MAX_FRAME_BYTES cannot be skipped safely, so it is answered and the connection closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", wyoming.wyoming_port)
    try:
        writer.write(b"this is not json\n")
        writer.write(b'{"type": "describe", "x": "\\ud800"}\n')
        await async_write_event(Describe().event(), writer)
        first = await asyncio.wait_for(async_read_event(reader), 10)
        second = await asyncio.wait_for(async_read_event(reader), 10)
        assert [first.type, second.type] == ["error", "error"]
        assert Error.from_event(first).code == Error.from_event(second).code == "bad_json"
        assert Info.is_type((await asyncio.wait_for(async_read_event(reader), 10)).type)
        writer.write(b'{"type": "audio-chunk", "payload_length": 999999999999}\n')
        await writer.drain()
        error = await asyncio.wait_for(async_read_event(reader), 10)
        assert Error.from_event(error).code == "too_large"
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
    finally:
        writer.close()


async def test_a_connection_left_open_times_out(models_dir, espeak):
    """IDLE_TIMEOUT_S=1: an utterance whose audio-stop never comes is finished as audio-stop would
    finish it (its transcript arrives: nothing accepted is lost), then `idle_timeout` and the server
    closes the connection, freeing the session slot; a connection that sends nothing is closed the
    same way."""
    port = free_port()
    env = {**FAST_ENV, "ASR_WYOMING_PORT": str(port), "IDLE_TIMEOUT_S": "1"}
    with ServiceProcess("asr", env=env, label="asr-wyoming-idle") as service:
        speech = concat(silence(0.3), said(COMPLETE), silence(0.3))
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
            step = RATE // 10
            for start in range(0, len(speech), step):
                pcm = encode(speech[start : start + step], "pcm_s16le")
                await client.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS, audio=pcm).event())
            events = []
            async with asyncio.timeout(60):
                while (event := await client.read_event()) is not None:
                    events.append(event)
        kinds = [e.type for e in events]
        assert kinds[0] == "transcript-start" and kinds[-3:] == ["transcript", "transcript-stop", "error"], kinds
        assert set(kinds[1:-3]) <= {"transcript-chunk"}, kinds
        text = Transcript.from_event(events[-3]).text
        assert wer(COMPLETE, text) <= 0.25, text
        assert Error.from_event(events[-1]).code == "idle_timeout"
        metrics = (await asyncio.to_thread(httpx.get, service.url + "/metrics")).text
        assert "voice_asr_active_sessions 0.0" in metrics

        async with AsyncTcpClient("127.0.0.1", port) as client:  # never says anything
            async with asyncio.timeout(30):
                error = Error.from_event(await read(client))
                assert error.code == "idle_timeout" and error.text
                assert await client.read_event() is None  # closed


async def test_graceful_shutdown_delivers_the_open_utterance(wyoming):
    """Last in this module (it stops the service): SIGTERM while an utterance is open (audio sent,
    no audio-stop yet) still delivers its transcript before the process exits."""
    speech = concat(silence(0.3), said(COMPLETE), silence(0.3))
    async with AsyncTcpClient("127.0.0.1", wyoming.wyoming_port) as client:
        await client.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
        pcm = encode(speech, "pcm_s16le")
        await client.write_event(AudioChunk(rate=RATE, width=WIDTH, channels=CHANNELS, audio=pcm).event())
        await client.write_event(Ping(text="sync").event())  # once pong is back, the server has taken the audio
        while not Pong.is_type((await read(client)).type):
            pass
        stopping = asyncio.create_task(asyncio.to_thread(wyoming.stop))
        events = await transcript_events(client)
        await stopping
    text = Transcript.from_event(next(e for e in events if Transcript.is_type(e.type))).text
    assert wer(COMPLETE, text) <= 0.25, text
    assert wyoming.proc.poll() is not None
