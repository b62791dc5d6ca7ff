"""Auth (API_KEYS), session limits (MAX_SESSIONS), idle timeout and graceful shutdown, on real processes."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from services.common.audio import encode, wav_bytes
from tests.asr.conftest import COMPLETE, FAST_ENV, said
from tests.asr.streaming import StreamResult, collect
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence

KEY = "k-test-1"


@pytest.fixture(scope="module")
def guarded(models_dir):
    env = {**FAST_ENV, "API_KEYS": f"{KEY},k-test-2", "MAX_SESSIONS": "1", "IDLE_TIMEOUT_S": "2"}
    service = ServiceProcess("asr", env=env, label="asr-guarded").start()
    yield service
    service.stop()


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def closed_with(url: str, **kwargs) -> tuple[int | None, str]:
    async with websockets.connect(url, **kwargs) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code, ws.close_reason


def test_http_needs_a_key(guarded):
    assert httpx.get(guarded.url + "/health").status_code == 200  # liveness stays open
    for path in ("/ready", "/metrics"):
        assert httpx.get(guarded.url + path).status_code == 401
        assert httpx.get(guarded.url + path, headers=auth("wrong")).status_code == 401
    assert httpx.get(guarded.url + "/ready", headers=auth()).status_code == 200
    assert httpx.get(guarded.url + "/ready", headers=auth("k-test-2")).status_code == 200
    response = httpx.post(guarded.url + "/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")})
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


async def test_websocket_without_or_with_a_wrong_key_is_closed_1008(guarded):
    assert (await closed_with(guarded.ws_url + "/v1/asr/stream"))[0] == 1008
    assert (await closed_with(guarded.ws_url + "/v1/asr/stream?api_key=nope"))[0] == 1008


async def test_key_in_query_or_header_opens_the_stream(guarded):
    for kwargs in ({"uri": f"{guarded.ws_url}/v1/asr/stream?api_key={KEY}"},):
        async with websockets.connect(kwargs["uri"]) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
    async with websockets.connect(guarded.ws_url + "/v1/asr/stream", additional_headers=auth()) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"


async def test_second_session_is_refused_1013_and_rest_503(guarded):
    url = f"{guarded.ws_url}/v1/asr/stream?api_key={KEY}"
    async with httpx.AsyncClient(base_url=guarded.url, headers=auth()) as http:
        async with websockets.connect(url) as first:
            assert json.loads(await first.recv())["type"] == "ready"
            code, reason = await closed_with(url)
            assert code == 1013 and "capacity" in reason
            ready = await http.get("/ready")
            assert ready.status_code == 503 and "capacity" in ready.json()["reason"]
            wav = wav_bytes(said(COMPLETE), 16000)
            busy = await http.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)})
            assert busy.status_code == 503 and busy.headers["Retry-After"]
            metrics = (await http.get("/metrics")).text
            assert "voice_asr_active_sessions 1.0" in metrics
            assert "voice_asr_rejected_sessions_total 2.0" in metrics
        # the slot frees when the first session closes
        for _ in range(50):
            if (await http.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.1)
    async with websockets.connect(url) as again:
        assert json.loads(await again.recv())["type"] == "ready"


async def test_idle_session_is_closed_after_its_turn_is_finalized(guarded):
    """IDLE_TIMEOUT_S=2: a client that goes quiet mid-turn gets its final, a fatal error, close 1000."""
    async with websockets.connect(f"{guarded.ws_url}/v1/asr/stream?api_key={KEY}") as ws:
        await ws.send(json.dumps({"type": "config", "turn_detection": {"mode": "none"}}))
        await ws.send(encode(concat(silence(0.2), said(COMPLETE)), "pcm_s16le"))
        result = StreamResult()
        await asyncio.wait_for(collect(ws, result), 20)
    assert result.close_code == 1000 and result.close_reason == "idle timeout"
    (error,) = result.of("error")
    assert error["code"] == "idle_timeout" and error["fatal"] is True
    assert result.finals[0]["end_of_turn"]["reason"] == "end"


async def test_graceful_shutdown_delivers_the_open_turn(models_dir):
    """SIGTERM with a session mid-turn: its final arrives, then close 1001; the process exits."""
    service = ServiceProcess("asr", env=FAST_ENV, label="asr-shutdown").start()
    try:
        async with websockets.connect(service.ws_url + "/v1/asr/stream") as ws:
            await ws.send(json.dumps({"type": "config", "turn_detection": {"mode": "none"}}))
            await ws.send(encode(concat(silence(0.2), said(COMPLETE)), "pcm_s16le"))
            await ws.send(json.dumps({"type": "keepalive"}))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "speech_start":
                pass
            result = StreamResult()
            reader = asyncio.create_task(collect(ws, result))
            code = await asyncio.to_thread(service.stop)
            await asyncio.wait_for(reader, 20)
        assert code in (0, -15)  # uvicorn re-raises the SIGTERM it handled after a clean shutdown
        assert result.close_code == 1001
        assert [f["end_of_turn"]["reason"] for f in result.finals] == ["end"]
    finally:
        service.stop()


def test_bad_settings_stop_the_service_naming_each_variable(models_dir):
    env = {**FAST_ENV, "ASR_DEVICE": "tpu", "ASR_TEMPERATURES": "warm", "MAX_SESSIONS": "-1"}
    service = ServiceProcess("asr", env=env, label="asr-badconfig")
    with pytest.raises(RuntimeError) as info:
        service.start(timeout=60)
    assert service.proc.returncode not in (0, None)
    for name in ("ASR_DEVICE", "ASR_TEMPERATURES", "MAX_SESSIONS"):
        assert name in str(info.value)
