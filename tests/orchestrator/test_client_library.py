"""The client library's reconnect and framing, against real local WebSocket servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from clients.voice import ASRStream, Backoff, RetriesExhausted, StreamClosed, retry
from clients.voice._ws import close_ws, http_url, open_ws, stream_url
from services.common.protocol import asr
from services.common.protocol.agent import FrameType, pack, unpack
from services.common.protocol.base import ProtocolError


def test_backoff_grows_exponentially_and_stays_bounded():
    b = Backoff(base_s=0.1, factor=2.0, max_s=1.0, jitter=0.0, max_attempts=None)
    assert [b.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_jitter_stays_under_the_ceiling_and_varies():
    b = Backoff(base_s=0.5, max_s=4.0, jitter=1.0, rng=random.Random(7))
    draws = [b.delay(3) for _ in range(200)]
    assert all(0.0 <= d <= b.ceiling(3) == 2.0 for d in draws)
    assert max(draws) - min(draws) > 0.5  # full jitter spreads clients out


def test_urls_are_derived_from_base_urls():
    assert stream_url("http://h:8001", "/v1/asr/stream") == "ws://h:8001/v1/asr/stream"
    assert stream_url("https://h", "/v1/tts/stream") == "wss://h/v1/tts/stream"
    assert stream_url("ws://h:1/custom/path?x=1", "/v1/asr/stream") == "ws://h:1/custom/path?x=1"
    assert http_url("wss://h:9/a/b") == "https://h:9"


def test_agent_frames_round_trip():
    frame = unpack(pack(FrameType.LLM_CHUNK, "héllo", flags=0x02))
    assert frame.type == FrameType.LLM_CHUNK and frame.needs_followup and not frame.is_final
    assert frame.text() == "héllo"
    with pytest.raises(ProtocolError):
        unpack(b"\x01")
    with pytest.raises(ProtocolError):
        unpack(b"\x7f\x00")


async def test_connect_retries_with_backoff_until_the_server_accepts():
    """The server refuses the first two handshakes with 503 (a service still starting)."""
    attempts: list[float] = []

    def process_request(connection, request):
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            return Response(503, "Service Unavailable", Headers(), b"")
        return None

    async def handler(ws):
        await ws.send("hello")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = server.sockets[0].getsockname()[1]
        backoff = Backoff(base_s=0.05, max_s=0.2, jitter=0.0, max_attempts=5)
        ws = await open_ws(f"ws://127.0.0.1:{port}/", backoff=backoff)
        assert await ws.recv() == "hello"
        await ws.close()
    assert len(attempts) == 3
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # 0.05 then 0.1: exponential


async def test_retry_gives_up_after_max_attempts():
    calls = 0

    async def refuse():
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("nope")

    with pytest.raises(RetriesExhausted):
        await retry(refuse, Backoff(base_s=0.01, max_s=0.02, max_attempts=3))
    assert calls == 3


async def test_asr_stream_reports_a_drop_and_reconnects_with_its_config():
    """A server that speaks the ASR handshake, then drops the first connection mid-stream."""
    configs: list[dict] = []
    connections = 0

    async def handler(ws):
        nonlocal connections
        connections += 1
        config = json.loads(await ws.recv())
        configs.append(config)
        await ws.send(json.dumps({"type": "ready", "session_id": f"s{connections}", "config": config}))
        if connections == 1:
            await ws.recv()  # one audio frame, then drop without a close frame
            ws.transport.abort()
            return
        async for _ in ws:
            await ws.send(json.dumps({"type": "speech_start", "session_id": "s2", "timestamp": 0.5}))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        stream = ASRStream(f"ws://127.0.0.1:{port}", {"sample_rate": 8000, "encoding": "mulaw"},
                           backoff=Backoff(base_s=0.01, max_attempts=3))  # fmt: skip
        ready = await stream.connect()
        assert isinstance(ready, asr.Ready) and ready.session_id == "s1"
        await stream.send_audio(b"\xff" * 160)
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(stream.recv(), 5)
        ready = await stream.reconnect()
        assert ready.session_id == "s2"
        await stream.send_audio(b"\xff" * 160)
        event = await asyncio.wait_for(stream.recv(), 5)
        assert isinstance(event, asr.SpeechStart) and event.timestamp == 0.5
        await stream.close()
    assert [c["sample_rate"] for c in configs] == [8000, 8000]
    assert all(c["type"] == "config" and c["encoding"] == "mulaw" for c in configs)


def test_asr_stream_rejects_a_bad_config_before_connecting():
    with pytest.raises(ProtocolError):
        ASRStream("ws://127.0.0.1:1", {"encoding": "mp3"})


async def test_api_key_goes_in_the_bearer_header():
    seen: list[str | None] = []

    def process_request(connection, request):
        seen.append(request.headers.get("Authorization"))
        return None

    async def handler(ws):
        await ws.close()

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await open_ws(f"ws://127.0.0.1:{port}/", api_key="sekret")
        await ws.close()
    assert seen == ["Bearer sekret"]


async def test_a_peer_that_never_answers_the_close_is_cut_off():
    """A service that stopped reading (it waits on its own writes to us) never answers our close.
    close_ws must then abort the TCP connection: cut short without that, the socket stayed open
    and the service's session stayed stuck with it (a TTS stream leaked once the orchestrator
    stopped reading it under load)."""
    eof = asyncio.Event()

    async def handshake_then_stop_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
        await writer.drain()
        await asyncio.sleep(1.0)  # busy elsewhere: the client's close frame sits unread
        try:
            while await reader.read(65536):  # then: the connection must be gone, not just quiet
                pass
        except ConnectionError:
            pass
        eof.set()

    server = await asyncio.start_server(handshake_then_stop_reading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ws = await open_ws(f"ws://127.0.0.1:{port}/v1/tts/stream")
        await asyncio.wait_for(close_ws(ws, timeout=0.3), 10)
        await asyncio.wait_for(eof.wait(), 10)
    finally:
        server.close()
