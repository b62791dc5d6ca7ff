"""The Wyoming TTS server (Home Assistant's protocol) inside the running TTS service, driven by the
wyoming package's own `AsyncTcpClient`.

Piper (the real en_US-joe voice) for what is heard: a realistic Home Assistant exchange (describe,
then one synthesis) and a streaming synthesis, both transcribed by faster-whisper tiny.en and
compared by WER. espeak-ng (fastest) for the protocol's edges: bad input → Wyoming `error` events
with the connection going on, the session limit shared with the WebSocket, and the metrics.
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import numpy as np
import pytest
import websockets
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from services.common.audio import resample
from services.common.config import MODELS_DIR
from tests.helpers.procs import ServiceProcess, free_port
from tests.helpers.wer import wer

JOE = "en_US-joe-medium"
ANSWER = "The living room lights are now on, and the front door is locked."
STREAMED = ["The kitchen timer is set ", "for ten minutes. ", "I will remind you ", "when it is done."]
MAX_WER = 0.15


def _service(engine: str, label: str, **env: str) -> tuple[ServiceProcess, int]:
    port = free_port()
    base = {"TTS_ENGINE": engine, "TTS_WYOMING_PORT": str(port), "REDIS_URL": "", "IDLE_TIMEOUT_S": "30"}
    return ServiceProcess("tts", {**base, **env}, label=label), port


@pytest.fixture(scope="module")
def piper(models_dir, tmp_path_factory):
    proc, port = _service("piper", "tts-wyoming-piper", TTS_VOICES_DIR=str(tmp_path_factory.mktemp("wy-voices")))
    with proc:
        yield proc, port


@pytest.fixture(scope="module")
def espeak_wy(espeak, tmp_path_factory):
    voices = str(tmp_path_factory.mktemp("wy-espeak-voices"))
    proc, port = _service("espeak", "tts-wyoming-espeak", MAX_SESSIONS="1", TTS_VOICES_DIR=voices)
    with proc:
        yield proc, port


@pytest.fixture(scope="module")
def whisper(models_dir):
    from faster_whisper import WhisperModel

    return WhisperModel(str(MODELS_DIR / "whisper-tiny.en"), device="cpu", compute_type="int8", cpu_threads=1)


def heard(whisper, pcm: bytes, rate: int) -> str:
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    segments, _ = whisper.transcribe(resample(audio, rate, 16000), language="en", beam_size=1, vad_filter=False)
    return "".join(s.text for s in segments)


async def read(client: AsyncTcpClient, timeout: float = 60.0) -> Event:
    event = await asyncio.wait_for(client.read_event(), timeout)
    assert event is not None, "the server closed the connection"
    return event


async def read_audio(client: AsyncTcpClient) -> tuple[AudioStart, bytes]:
    """audio-start, its chunks (same format), audio-stop → (start, pcm)."""
    start = AudioStart.from_event(await read(client))
    pcm = b""
    while True:
        event = await read(client)
        if AudioStop.is_type(event.type):
            return start, pcm
        chunk = AudioChunk.from_event(event)
        assert (chunk.rate, chunk.width, chunk.channels) == (start.rate, start.width, start.channels)
        pcm += chunk.audio


async def expect_error(client: AsyncTcpClient, code: str) -> Error:
    event = await read(client)
    assert Error.is_type(event.type), event
    error = Error.from_event(event)
    assert error.code == code and error.text, error
    return error


def metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# ------------------------------------------------------------------ what Home Assistant does
async def test_home_assistant_exchange_describe_then_one_synthesis(piper, whisper):
    proc, port = piper
    async with AsyncTcpClient("127.0.0.1", port) as client:  # HA: one connection to describe
        await client.write_event(Describe().event())
        info = Info.from_event(await read(client))
    (program,) = info.tts
    assert program.supports_synthesize_streaming and program.installed
    voices = {v.name: v for v in program.voices}
    assert JOE in voices and voices[JOE].languages == ["en_US"]

    async with AsyncTcpClient("127.0.0.1", port) as client:  # and a fresh one per synthesis
        await client.write_event(Synthesize(ANSWER, voice=SynthesizeVoice(name=JOE)).event())
        start, pcm = await read_audio(client)
    assert (start.rate, start.width, start.channels) == (22050, 2, 1)
    assert len(pcm) / 2 / start.rate > 2.0
    text = heard(whisper, pcm, start.rate)
    assert wer(ANSWER, text) <= MAX_WER, text


async def test_streaming_synthesis_speaks_while_text_arrives(piper, whisper):
    proc, port = piper
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(language="en")).event())
        await client.write_event(SynthesizeChunk(STREAMED[0]).event())
        await client.write_event(SynthesizeChunk(STREAMED[1]).event())
        # the first sentence is complete: its audio comes before the rest of the text is sent
        first = await read(client)
        assert AudioStart.is_type(first.type), first
        chunk = AudioChunk.from_event(await read(client))
        for piece in STREAMED[2:]:
            await client.write_event(SynthesizeChunk(piece).event())
        await client.write_event(Synthesize("".join(STREAMED)).event())  # HA's copy for old servers: ignored
        await client.write_event(SynthesizeStop().event())
        pcm = chunk.audio
        while True:
            event = await read(client)
            if AudioStop.is_type(event.type):
                break
            pcm += AudioChunk.from_event(event).audio
        assert SynthesizeStopped.is_type((await read(client)).type)
    text = heard(whisper, pcm, chunk.rate)
    assert wer("".join(STREAMED), text) <= MAX_WER, text


# ------------------------------------------------------------------ the protocol's edges (espeak)
async def test_bad_input_gets_wyoming_errors_and_the_connection_goes_on(espeak_wy):
    proc, port = espeak_wy
    async with AsyncTcpClient("127.0.0.1", port) as client:
        raw = client._writer  # for what the package refuses to send: invalid JSON, lone surrogates
        await client.write_event(Event(type="transcribe", data={}))
        await expect_error(client, "unknown_event")
        await client.write_event(Event(type="synthesize", data={"voice": {"name": "en-us"}}))
        await expect_error(client, "bad_event")  # no text
        await client.write_event(Synthesize("   ").event())
        await expect_error(client, "empty_text")
        await client.write_event(Synthesize("x" * 5000).event())
        await expect_error(client, "text_too_long")
        await client.write_event(Synthesize("Hello.", voice=SynthesizeVoice(name="nobody")).event())
        await expect_error(client, "unknown_voice")
        await client.write_event(Synthesize("Hello.", voice=SynthesizeVoice(language="xx")).event())
        await expect_error(client, "unknown_voice")
        raw.write(b'{"type": "synthesize", "data": {"text": "hi", "voice": {"name": "\\ud800"}}}\n')
        await expect_error(client, "bad_json")
        raw.write(b"[" * 10_000 + b"]" * 10_000 + b"\n")
        await expect_error(client, "bad_json")
        await client.write_event(SynthesizeChunk("orphan").event())
        await expect_error(client, "not_started")
        await client.write_event(SynthesizeStop().event())
        await expect_error(client, "not_started")
        # a stream whose start is refused still ends with synthesize-stopped
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nobody")).event())
        await expect_error(client, "unknown_voice")
        await client.write_event(SynthesizeChunk("dropped").event())
        await client.write_event(SynthesizeStop().event())
        assert SynthesizeStopped.is_type((await read(client)).type)
        # a stream that ends without any text: the error, then synthesize-stopped
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeStop().event())
        await expect_error(client, "empty_text")
        assert SynthesizeStopped.is_type((await read(client)).type)

        await client.write_event(Ping(text="still there?").event())
        assert (await read(client)).type == "pong"
        await client.write_event(Synthesize("Still working.").event())
        start, pcm = await read_audio(client)
        assert start.rate == 22050 and len(pcm) > 0.3 * 2 * 22050
    assert "Traceback" not in proc.log_tail(400)


async def test_the_session_limit_and_metrics_are_shared_with_the_websocket(espeak_wy):
    proc, port = espeak_wy
    before = metric(proc.url, "voice_tts_requests_total", '{outcome="complete"}')
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize("Hello.", voice=SynthesizeVoice(name="nobody")).event())
        await expect_error(client, "unknown_voice")  # refused: this open connection holds no slot
        async with websockets.connect(proc.ws_url + "/v1/tts/stream") as ws:  # MAX_SESSIONS=1: the one slot
            assert json.loads(await ws.recv())["type"] == "ready"
            await client.write_event(Synthesize("Refused for now.").event())
            await expect_error(client, "capacity")
            assert metric(proc.url, "voice_tts_wyoming_connections") == 1
    for _ in range(200):  # the WebSocket is gone: its slot is free once the server has seen the close
        if metric(proc.url, "voice_tts_active_streams") == 0:
            break
        await asyncio.sleep(0.05)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for _ in range(2):  # the slot is given back after each synthesis
            await client.write_event(Synthesize("Now there is room.").event())
            await read_audio(client)
    assert metric(proc.url, "voice_tts_requests_total", '{outcome="complete"}') == before + 2
    assert metric(proc.url, "voice_tts_time_to_first_audio_seconds_count") >= 2


async def test_sigterm_ends_an_open_wyoming_stream_and_the_process_exits(espeak, tmp_path):
    import signal

    proc, port = _service("espeak", "tts-wyoming-shutdown", TTS_VOICES_DIR=str(tmp_path))
    proc.start()
    try:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart().event())  # a stream left open: the core is busy
            await client.write_event(SynthesizeChunk("An open stream. ").event())
            assert AudioStart.is_type((await read(client)).type)
            proc.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                while await client.read_event() is not None:  # the rest of its audio, then EOF
                    pass
        assert proc.proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        proc.stop()


async def test_a_stream_left_open_times_out(espeak, tmp_path):
    proc, port = _service("espeak", "tts-wyoming-idle", TTS_VOICES_DIR=str(tmp_path), IDLE_TIMEOUT_S="1")
    with proc:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk("Nobody ever says stop. ").event())
            events = []
            async with asyncio.timeout(30):
                while (event := await client.read_event()) is not None:
                    events.append(event)
        assert AudioStart.is_type(events[0].type)  # the text it had was spoken
        errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
        assert [e.code for e in errors] == ["idle_timeout"], errors  # then the connection was closed
        assert metric(proc.url, "voice_tts_wyoming_connections") == 0
