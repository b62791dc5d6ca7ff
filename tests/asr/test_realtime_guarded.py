"""The new transports under the same guards as our WebSocket: API keys (Bearer from the openai SDK,
?api_key, wrong key → 1008), one session limit across every transport (MAX_SESSIONS=1: a Realtime
session holds the slot, a Wyoming utterance and a second Realtime session are refused), idle
timeout (IDLE_TIMEOUT_S=2)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from openai import AsyncOpenAI
from wyoming.audio import AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error

from tests.asr.conftest import FAST_ENV
from tests.helpers.procs import ServiceProcess, free_port

KEY = "k-realtime"


@pytest.fixture(scope="module")
def guarded(models_dir):
    port = free_port()
    env = {**FAST_ENV, "API_KEYS": KEY, "MAX_SESSIONS": "1", "IDLE_TIMEOUT_S": "2", "ASR_WYOMING_PORT": str(port)}
    service = ServiceProcess("asr", env=env, label="asr-realtime-guarded").start()
    service.wyoming_port = port
    yield service
    service.stop()


def connect(service, key: str):
    client = AsyncOpenAI(base_url=service.url + "/v1", api_key=key)
    return client.realtime.connect(model="m", extra_query={"intent": "transcription"}, max_retries=0)


async def closed_with(url: str) -> int | None:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def test_keys_as_on_our_websocket(guarded):
    url = guarded.ws_url + "/v1/realtime?intent=transcription"
    assert await closed_with(url) == 1008
    assert await closed_with(url + "&api_key=wrong") == 1008
    async with websockets.connect(url + f"&api_key={KEY}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "session.created"
    async with connect(guarded, KEY) as conn:  # the SDK sends Authorization: Bearer
        assert (await asyncio.wait_for(conn.recv(), 10)).type == "session.created"


async def test_one_session_limit_across_transports(guarded):
    async with connect(guarded, KEY) as conn:
        assert (await asyncio.wait_for(conn.recv(), 10)).type == "session.created"
        assert await closed_with(guarded.ws_url + f"/v1/realtime?intent=transcription&api_key={KEY}") == 1013
        async with AsyncTcpClient("127.0.0.1", guarded.wyoming_port) as client:
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            error = Error.from_event(await asyncio.wait_for(client.read_event(), 10))
            assert error.code == "capacity"
            await client.write_event(AudioStop().event())  # dropped quietly: its start was refused
    for _ in range(50):  # the slot frees when the Realtime session closes
        async with AsyncTcpClient("127.0.0.1", guarded.wyoming_port) as client:
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await client.write_event(AudioStop().event())
            event = await asyncio.wait_for(client.read_event(), 10)
        if event.type != "error":
            break
        await asyncio.sleep(0.1)
    assert event.type == "transcript-start"


async def test_idle_realtime_session_gets_an_error_then_close_1000(guarded):
    async with connect(guarded, KEY) as conn:
        assert (await asyncio.wait_for(conn.recv(), 10)).type == "session.created"
        error = await asyncio.wait_for(conn.recv(), 10)
        assert error.type == "error" and error.error.code == "idle_timeout"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(conn.recv_bytes(), 10)
