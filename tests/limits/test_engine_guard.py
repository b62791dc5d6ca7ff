"""Stuck inference and the circuit breaker on the real services: the ASR (Whisper tiny.en) and
the TTS (espeak-ng) with INFERENCE_TIMEOUT_S far below what a real call takes, so every engine
call really overruns. Each request fails with `inference_timeout`, after BREAKER_FAILURES of them
the breaker opens (fast `engine_unavailable`, /ready 503), the process stays up, and after the
cool-down /ready lets a probe through again."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import speak

GUARD_ENV = {"INFERENCE_TIMEOUT_S": "0.001", "BREAKER_FAILURES": "2", "BREAKER_COOLDOWN_S": "8"}


def wav_bytes(seconds_of_speech: str) -> bytes:
    import io
    import wave

    import numpy as np

    audio = speak(seconds_of_speech)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def wait_ready(url: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(url + "/ready").status_code
        if status == 200:
            return status
        time.sleep(0.2)
    return status


@pytest.fixture(scope="module")
def asr(models_dir, espeak):
    env = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "1", **GUARD_ENV}
    service = ServiceProcess("asr", env=env, label="limits-asr-guard").start()
    yield service
    service.stop()


def test_asr_timeout_then_breaker_then_half_open(asr):
    files = {"file": ("a.wav", wav_bytes("Hello there, how are you?"), "audio/wav")}
    first = [httpx.post(asr.url + "/v1/audio/transcriptions", files=files, data={"model": "x"}) for _ in range(2)]
    assert [r.status_code for r in first] == [503, 503]
    assert [r.json()["error"]["code"] for r in first] == ["inference_timeout", "inference_timeout"]
    fast = httpx.post(asr.url + "/v1/audio/transcriptions", files=files, data={"model": "x"})
    assert fast.status_code == 503 and fast.json()["error"]["code"] == "engine_unavailable"
    ready = httpx.get(asr.url + "/ready")
    assert ready.status_code == 503 and "failed 2 times" in ready.json()["reason"]
    assert httpx.get(asr.url + "/health").status_code == 200  # the process survives


def test_asr_half_open_after_cool_down(asr):
    assert wait_ready(asr.url) == 200  # the cool-down is over: half-open, a probe may come


async def test_asr_stream_gets_a_coded_error_and_goes_on(asr):
    audio = speak("Good morning to you all.")
    pcm = (audio * 32767).astype("<i2").tobytes()
    async with websockets.connect(asr.ws_url + "/v1/asr/stream") as ws:
        await ws.send(json.dumps({"type": "config", "turn_detection": {"mode": "none"}}))
        errors = []
        for _round in range(3):
            await ws.send(pcm)
            await ws.send(json.dumps({"type": "flush"}))
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if event["type"] == "error":
                    errors.append(event)
                    break
                assert event["type"] != "final", "a 1 ms timeout cannot produce a final"
        await ws.send(json.dumps({"type": "keepalive"}))  # the session is still open
    codes = [e["code"] for e in errors]
    assert set(codes) <= {"inference_timeout", "engine_unavailable"} and "engine_unavailable" in codes
    assert all(e["message"] and e.get("fatal") is False for e in errors)


@pytest.fixture(scope="module")
def tts(espeak):
    service = ServiceProcess("tts", env={"TTS_ENGINE": "espeak", **GUARD_ENV}, label="limits-tts-guard").start()
    yield service
    service.stop()


async def test_tts_timeout_then_breaker(tts):
    text = "This is a long sentence that espeak needs a while to say. " * 20
    async with websockets.connect(tts.ws_url + "/v1/tts/stream", max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        codes = []
        for i in range(3):
            await ws.send(json.dumps({"type": "synthesize", "request_id": f"r{i}", "text": text}))
            while True:
                raw = await asyncio.wait_for(ws.recv(), 60)
                if isinstance(raw, bytes):
                    continue
                event = json.loads(raw)
                if event["type"] in ("error", "synthesis_complete"):
                    break
            codes.append(event.get("code", event["type"]))
    assert codes == ["inference_timeout", "inference_timeout", "engine_unavailable"]
    async with httpx.AsyncClient(base_url=tts.url) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 503 and "TTS engine failed" in ready.json()["reason"]
        speech = await client.post("/v1/audio/speech", json={"input": "hello", "voice": "default"})
        assert speech.status_code == 503 and speech.json()["error"]["code"] == "engine_unavailable"
        assert (await client.get("/health")).status_code == 200


def test_tts_half_open_after_cool_down(tts):
    assert wait_ready(tts.url) == 200
