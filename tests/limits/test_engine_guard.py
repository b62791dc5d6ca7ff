"""Stuck inference and the circuit breaker on the real services: the ASR (Whisper tiny.en) and
the TTS (espeak-ng) with INFERENCE_TIMEOUT_S far below what a real call takes, so every engine
call really overruns. Each request fails with `inference_timeout`, after BREAKER_FAILURES of them
the breaker opens (fast `engine_unavailable`, /ready 503), the process stays up, and after the
cool-down /ready lets a probe through again. With one session slot and one synthesis slot, a
timed-out inference is shown to free its slot: the next request is admitted and reaches the
engine, the gauges and /ready show the slot free."""

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
    # one session slot: a request that timed out and kept its slot would make the next one `capacity`
    env = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "1", "MAX_SESSIONS": "1", **GUARD_ENV}
    service = ServiceProcess("asr", env=env, label="limits-asr-guard").start()
    yield service
    service.stop()


def test_asr_timeout_then_breaker_then_half_open(asr):
    files = {"file": ("a.wav", wav_bytes("Hello there, how are you?"), "audio/wav")}
    first = [httpx.post(asr.url + "/v1/audio/transcriptions", files=files, data={"model": "x"}) for _ in range(2)]
    assert [r.status_code for r in first] == [503, 503]
    # the second was admitted into the one session slot and reached the engine: the first freed it
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


@pytest.fixture(scope="module")
def tts_one_slot(espeak):
    """One session slot, one synthesis slot, and a breaker that does not open: every engine call
    times out, and a request gets in only if the one before it freed its slots."""
    env = {
        "TTS_ENGINE": "espeak",
        **GUARD_ENV,
        "BREAKER_FAILURES": "1000",
        "TTS_MAX_CONCURRENT": "1",
        "MAX_SESSIONS": "1",
    }
    service = ServiceProcess("tts", env=env, label="limits-tts-guard-slot").start()
    yield service
    service.stop()


async def gauge(http: httpx.AsyncClient, name: str) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


async def next_outcome(ws) -> dict:
    """The `error` or `synthesis_complete` that ends the running request (audio skipped)."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 60)
        if isinstance(raw, str) and (event := json.loads(raw))["type"] in ("error", "synthesis_complete"):
            return event


LONG_TEXT = "This is a long sentence that espeak needs a while to say. " * 20


async def speech(http: httpx.AsyncClient) -> tuple[int, str]:
    """One REST speech request: its status and, for an error answer, its code; a body the server
    cut off (the failure came after the headers went out) reads as "cut"."""
    try:
        r = await http.post("/v1/audio/speech", json={"input": LONG_TEXT, "response_format": "pcm"})
    except httpx.RemoteProtocolError:
        return 200, "cut"
    return r.status_code, r.json()["error"]["code"] if r.status_code != 200 else "complete"


async def test_tts_timed_out_inference_frees_its_slot(tts_one_slot):
    tts = tts_one_slot
    async with (
        httpx.AsyncClient(base_url=tts.url, timeout=60) as http,
        websockets.connect(tts.ws_url + "/v1/tts/stream", max_size=None) as ws,
    ):
        assert json.loads(await ws.recv())["type"] == "ready"
        # the session holds the one session slot, and /ready and REST say so: these checks can fail
        held = await http.get("/ready")
        assert held.status_code == 503 and "capacity" in held.json()["reason"]
        assert await speech(http) == (503, "capacity")
        for i in range(3):  # one synthesis slot: each request runs only if the one before freed it
            await ws.send(json.dumps({"type": "synthesize", "request_id": f"r{i}", "text": LONG_TEXT}))
            event = await next_outcome(ws)
            assert (event["type"], event.get("code"), event["request_id"]) == ("error", "inference_timeout", f"r{i}")
            # freed before the error went out: nothing runs, nothing waits for the slot
            assert await gauge(http, "voice_tts_active_syntheses") == 0
            assert await gauge(http, "voice_tts_queue_depth") == 0
        await ws.close()
    assert wait_ready(tts.url) == 200  # the session is gone (the server sees the close after us)
    async with httpx.AsyncClient(base_url=tts.url, timeout=60) as http:
        # REST: a speech request holds the one session slot while its body streams; timed out, it
        # fails, and the next one is admitted again (not `capacity`) and fails the same way
        outcomes = [await speech(http) for _ in range(3)]
        assert all(outcome != (503, "capacity") and outcome[1] != "complete" for outcome in outcomes), outcomes
        assert (await http.get("/ready")).status_code == 200
        assert await gauge(http, "voice_tts_active_syntheses") == 0
