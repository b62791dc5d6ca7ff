"""Session limit and API keys on the TTS service (WebSocket close codes, REST 503/401)."""

from __future__ import annotations

import httpx
import pytest
import websockets

from tests.helpers.procs import ServiceProcess

pytestmark = pytest.mark.usefixtures("espeak")
KEY = "test-key"


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    env = {
        "TTS_ENGINE": "espeak",
        "MAX_SESSIONS": "1",
        "API_KEYS": KEY,
        "REDIS_URL": "",
        "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("voices")),
    }
    with ServiceProcess("tts", env=env, label="tts-limits") as service:
        yield service


async def test_second_session_is_refused_with_1013_and_rest_gets_503(limited):
    ws = await websockets.connect(limited.ws_url + f"/v1/tts/stream?api_key={KEY}")
    try:
        assert '"ready"' in await ws.recv()
        second = await websockets.connect(limited.ws_url + f"/v1/tts/stream?api_key={KEY}")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await second.recv()
        assert closed.value.rcvd.code == 1013
        async with httpx.AsyncClient() as http:
            busy = await http.post(
                limited.url + "/v1/audio/speech",
                json={"model": "x", "voice": "alloy", "input": "Hi."},
                headers={"Authorization": f"Bearer {KEY}"},
            )
        assert busy.status_code == 503 and busy.headers["Retry-After"]
    finally:
        await ws.close()


async def test_api_key_required(limited):
    async with httpx.AsyncClient() as http:
        assert (await http.get(limited.url + "/v1/voices")).status_code == 401
        assert (await http.get(limited.url + "/health")).status_code == 200
    ws = await websockets.connect(limited.ws_url + "/v1/tts/stream?api_key=wrong")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 1008


async def test_sigterm_closes_open_sessions_with_1001(tmp_path):
    """Graceful shutdown: the open session is closed by the service itself (1001 + reason),
    not dropped by the server with 1012 before the app could act."""
    import asyncio
    import json
    import signal

    env = {"TTS_ENGINE": "espeak", "REDIS_URL": "", "TTS_VOICES_DIR": str(tmp_path)}
    service = ServiceProcess("tts", env=env, label="tts-shutdown").start()
    try:
        async with websockets.connect(service.ws_url + "/v1/tts/stream") as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            service.proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
            assert ws.close_code == 1001
        assert service.proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        service.stop()
