"""The piper engine behind the real TTS service: its speech, transcribed by our own ASR service
(real Whisper tiny.en), gives back the words sent, over the WebSocket (whole and token by token)
and REST (the official openai SDK). Also: cancel, disconnects freeing the synthesis slot, voices,
and the clear errors for cloning and unknown voices."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import httpx
import numpy as np
import openai
import pytest
import websockets

from services.common.audio import decode, wav_bytes
from services.common.config import MODELS_DIR
from services.common.text import split_phrases, split_text
from tests.helpers.procs import ServiceProcess
from tests.helpers.wer import wer
from tests.tts.wsclient import TTSStream

JOE = "en_US-joe-medium"
SENTENCE = "The weather is sunny and warm today, so we will walk to the park after lunch."
QUESTION = "Could you please tell me how to get to the train station from here?"
LONG = " ".join(
    [
        "When the morning train finally arrived at the quiet station, the passengers stepped onto the platform,",
        "looked around for their friends, and walked slowly towards the old wooden gate near the river,",
        "where a small boat was waiting for them, its red sails folded, its captain asleep in the sun.",
    ]
    * 4
)
MAX_WER = 0.08


@pytest.fixture(scope="module")
def services(tmp_path_factory, models_dir):
    """A piper TTS (one synthesis slot, so a leaked slot shows) and the ASR with the real tiny.en,
    both started at once."""
    voices = tmp_path_factory.mktemp("piper-voices")
    source = MODELS_DIR / "piper" / f"{JOE}.onnx"
    for name in (JOE, "test_copy-medium"):
        (voices / f"{name}.onnx").symlink_to(source)
        (voices / f"{name}.onnx.json").symlink_to(source.with_name(source.name + ".json"))
    tts_env = {
        "TTS_ENGINE": "piper",
        "TTS_PIPER_VOICES_DIR": str(voices),
        "TTS_MAX_CONCURRENT": "1",
        "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("registered")),
        "REDIS_URL": "",
        "LOG_LEVEL": "INFO",
    }
    asr_env = {
        "ASR_MODEL": str(MODELS_DIR / "whisper-tiny.en"),
        "ASR_TEMPERATURES": "0.0",
        "ASR_CPU_THREADS": "1",
        "LOG_LEVEL": "INFO",
    }
    tts = ServiceProcess("tts", env=tts_env, label="tts-piper")
    asr = ServiceProcess("asr", env=asr_env, label="tts-piper-asr")
    started = []
    try:
        for service in (tts, asr):
            service.start(wait="")
            started.append(service)
        for service in (tts, asr):
            service.wait_for("/ready", 180.0)
        yield tts, asr
    finally:
        for service in started:
            service.stop()


@pytest.fixture(scope="module")
def tts(services):
    return services[0]


def transcribe(asr: ServiceProcess, wav: bytes) -> str:
    response = httpx.post(
        asr.url + "/v1/audio/transcriptions",
        files={"file": ("speech.wav", wav, "audio/wav")},
        data={"model": "whisper-1", "language": "en"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()["text"]


async def transcribe_stream(asr: ServiceProcess, audio16k: np.ndarray) -> str:
    """Through the ASR's own streaming WebSocket (the client library), turn ended by `end`."""
    from clients.voice import ASRStream
    from services.common.protocol import asr as asr_protocol

    config = {"sample_rate": 16000, "language": "en", "partials": False, "turn_detection": {"mode": "none"}}
    finals = []
    async with ASRStream(asr.ws_url, config) as stream:
        for start in range(0, len(audio16k), 1600):
            await stream.send_audio(audio16k[start : start + 1600])
        await stream.end()
        async for event in stream:
            if isinstance(event, asr_protocol.Final):
                finals.append(event.text)
    return " ".join(finals)


def metric(service: ServiceProcess, name: str) -> float:
    text = httpx.get(service.url + "/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_until(predicate, timeout: float = 30.0) -> bool:
    """Polls a condition (never a timing assertion: the deadline only bounds a failing test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def audio_of(events, request_id: str, encoding: str = "pcm_f32le") -> np.ndarray:
    chunks = [
        decode(e["_audio"], encoding) for e in events if e["type"] == "audio_chunk" and e["request_id"] == request_id
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


# ------------------------------------------------------------------ words in, the same words out
async def test_ws_whole_sentence_transcribes_back(services):
    tts, asr = services
    stream = await TTSStream.open(tts.ws_url)
    try:
        assert stream.ready["engine"] == "piper" and stream.ready["model"] == f"piper:{JOE}"
        await stream.send(type="synthesize", request_id="whole", text=SENTENCE)
        events = await stream.until("synthesis_complete", "error")
    finally:
        await stream.close()
    assert events[-1]["type"] == "synthesis_complete", events[-1]
    audio = audio_of(events, "whole")
    heard = await asyncio.to_thread(transcribe, asr, wav_bytes(audio, 24000))
    assert wer(SENTENCE, heard) <= MAX_WER, heard


async def test_ws_token_by_token_transcribes_back(services):
    """The same sentence as LLM tokens (`text` messages of a word or less each), then `end`; the
    16 kHz audio goes straight into the ASR's streaming WebSocket."""
    tts, asr = services
    tokens = [t for word in re.findall(r"\S+\s*", SENTENCE) for t in (word[:3], word[3:]) if t]
    stream = await TTSStream.open(tts.ws_url)
    try:
        await stream.send(type="config", sample_rate=16000)
        assert (await stream.event())["sample_rate"] == 16000
        for token in tokens:
            await stream.send(type="text", request_id="tokens", text=token)
        await stream.send(type="end", request_id="tokens")
        events = await stream.until("synthesis_complete", "error")
    finally:
        await stream.close()
    assert events[-1]["type"] == "synthesis_complete", events[-1]
    heard = await transcribe_stream(asr, audio_of(events, "tokens"))  # the ASR's WebSocket this time
    assert wer(SENTENCE, heard) <= MAX_WER, heard


def test_rest_with_the_openai_sdk_transcribes_back(services):
    tts, asr = services
    speech = openai.OpenAI(base_url=tts.url + "/v1", api_key="unused", max_retries=0)
    response = speech.audio.speech.create(model="tts-1", voice="alloy", input=QUESTION, response_format="wav")
    hearing = openai.OpenAI(base_url=asr.url + "/v1", api_key="unused", max_retries=0)
    heard = hearing.audio.transcriptions.create(model="whisper-1", file=("q.wav", response.content), language="en")
    assert wer(QUESTION, heard.text) <= MAX_WER, heard.text


# ------------------------------------------------------------------ streaming, cancel, formats
async def test_long_text_streams_and_cancel_stops_it(tts):
    stream = await TTSStream.open(tts.ws_url)
    try:
        await stream.send(type="synthesize", request_id="long", text=LONG)
        first = await stream.until("audio_chunk")
        assert first[-1]["request_id"] == "long"
        await stream.send(type="cancel", request_id="long")
        events = await stream.until("cancelled")
        sent = 1 + sum(e["type"] == "audio_chunk" for e in events)
        phrases = sum(len(split_phrases(piece, 80)) for piece in split_text(LONG, 300))
        assert phrases >= 12 and sent < phrases / 2  # at least one chunk per phrase: it stopped early
        await stream.send(type="synthesize", request_id="after", text="Still here.")
        after = await stream.until("synthesis_complete")
        assert all(e["request_id"] == "after" for e in after if e["type"] == "audio_chunk")
        assert after[-1]["request_id"] == "after" and after[-1]["chunks_sent"] >= 1
    finally:
        await stream.close()
    assert wait_until(lambda: metric(tts, "voice_tts_active_syntheses") == 0)


async def test_any_output_rate_and_encoding(tts):
    stream = await TTSStream.open(tts.ws_url)
    try:
        await stream.send(type="config", sample_rate=16000, encoding="pcm_s16le")
        ready = await stream.event()
        assert ready["type"] == "ready" and ready["sample_rate"] == 16000 and ready["model"] == f"piper:{JOE}"
        await stream.send(type="synthesize", request_id="s16", text="Hello there.")
        events = await stream.until("synthesis_complete")
    finally:
        await stream.close()
    chunks = [e for e in events if e["type"] == "audio_chunk"]
    assert chunks and all(c["sample_rate"] == 16000 and c["encoding"] == "pcm_s16le" for c in chunks)
    audio = audio_of(events, "s16", "pcm_s16le")
    assert 0.4 < len(audio) / 16000 < 3.0 and np.max(np.abs(audio)) > 0.05


# ------------------------------------------------------------------ a disconnect frees the slot
def test_rest_disconnect_mid_stream_frees_the_slot(tts):
    cancelled_before = metric(tts, 'voice_tts_requests_total{outcome="cancelled"}')
    body = json.dumps({"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm"}).encode()
    with socket.create_connection(("127.0.0.1", tts.port), timeout=60) as sock:
        sock.sendall(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 4096:
            data = sock.recv(65536)
            assert data, "the server closed before streaming any audio"
            received += data
        assert received.startswith(b"HTTP/1.1 200")
    # the client is gone mid-body: the synthesis is cancelled and its slot comes back
    assert wait_until(lambda: metric(tts, "voice_tts_active_syntheses") == 0)
    assert wait_until(lambda: metric(tts, 'voice_tts_requests_total{outcome="cancelled"}') == cancelled_before + 1)
    response = httpx.post(
        tts.url + "/v1/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Next one.", "response_format": "pcm"},
        timeout=60,
    )
    assert response.status_code == 200 and len(response.content) > 4800  # the one slot serves the next request


async def test_ws_disconnect_mid_stream_frees_the_slot(tts):
    ws = await websockets.connect(tts.ws_url + "/v1/tts/stream", max_size=None)
    assert json.loads(await ws.recv())["type"] == "ready"
    await ws.send(json.dumps({"type": "synthesize", "request_id": "gone", "text": LONG}))
    while not (isinstance(message := await ws.recv(), str) and json.loads(message)["type"] == "audio_chunk"):
        pass
    ws.transport.abort()  # no close handshake: the socket just goes away
    assert await asyncio.to_thread(wait_until, lambda: metric(tts, "voice_tts_active_streams") == 0)
    assert await asyncio.to_thread(wait_until, lambda: metric(tts, "voice_tts_active_syntheses") == 0)
    stream = await TTSStream.open(tts.ws_url)
    try:
        await stream.send(type="synthesize", request_id="next", text="Next one.")
        assert (await stream.until("synthesis_complete"))[-1]["chunks_sent"] >= 1
    finally:
        await stream.close()


# ------------------------------------------------------------------ voices and their errors
def test_voices_are_listed_and_spoken(tts):
    for path in ("/v1/voices", "/v1/audio/voices"):
        listed = httpx.get(tts.url + path, timeout=10).json()["data"]
        assert [v["id"] for v in listed] == [JOE, "test_copy-medium"] and all(v["builtin"] for v in listed)
    for voice in ("default", "test_copy-medium"):
        response = httpx.post(
            tts.url + "/v1/audio/speech",
            json={"model": "tts-1", "voice": voice, "input": "Hello.", "response_format": "wav"},
            timeout=60,
        )
        assert response.status_code == 200 and len(response.content) > 44 + 4800
    ready = httpx.get(tts.url + "/ready", timeout=10).json()
    assert ready["status"] == "ready" and ready["engine"] == "piper" and ready["model"] == f"piper:{JOE}"


def test_rest_register_and_unknown_voice_are_clear_errors(tts):
    reference = wav_bytes(np.sin(np.arange(3 * 24000) / 24000 * 2 * np.pi * 220).astype(np.float32) * 0.3, 24000)
    response = httpx.post(tts.url + "/v1/voices", files={"file": ("ref.wav", reference, "audio/wav")}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "cloning_unsupported"
    response = httpx.post(
        tts.url + "/v1/audio/speech", json={"model": "tts-1", "voice": "nobody", "input": "Hi."}, timeout=30
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_voice"
    assert JOE in response.json()["error"]["message"]  # it says which voices there are


async def test_ws_register_and_unknown_voice_are_clear_errors(tts):
    import base64

    stream = await TTSStream.open(tts.ws_url)
    try:
        reference = base64.b64encode(wav_bytes(np.zeros(24000 * 3, np.float32), 24000)).decode()
        await stream.send(type="register_voice", voice_id="mine", reference_audio=reference)
        error = (await stream.until("error", "voice_registered"))[-1]
        assert error["type"] == "error" and error["code"] == "cloning_unsupported"
        await stream.send(type="synthesize", request_id="who", text="Hi.", voice_id="nobody")
        error = (await stream.until("error", "synthesis_complete"))[-1]
        assert error["type"] == "error" and error["code"] == "unknown_voice"
        await stream.send(type="synthesize", request_id="ok", text="Hi.", voice_id="test_copy-medium")
        assert (await stream.until("synthesis_complete"))[-1]["request_id"] == "ok"  # the session goes on
    finally:
        await stream.close()
