"""Issue 9, item 7: the query key only on WebSockets, TTS /ready following Redis, a request-head
timeout for half-open connections and a loud warning when listening beyond loopback without keys
(the SIGTERM drain: test_drain.py)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time

import httpx
import pytest
import websockets

from services.common import logs, server
from services.common.config import CommonConfig
from tests.helpers.procs import ServiceProcess

pytestmark = pytest.mark.usefixtures("espeak")
KEY = "hardening-key"


@pytest.fixture(scope="module")
def keyed_tts(redis):
    env = {"TTS_ENGINE": "espeak", "REDIS_URL": redis.url, "API_KEYS": KEY, "HEADER_TIMEOUT_S": "1"}
    with ServiceProcess("tts", env=env, label="hardening-http-misc") as service:
        yield service


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


async def test_query_key_is_for_websockets_only(keyed_tts):
    async with httpx.AsyncClient(base_url=keyed_tts.url, timeout=30) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready", headers=auth())).status_code == 200
        refused = await http.get("/ready", params={"api_key": KEY})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert (await http.get("/v1/voices", params={"api_key": KEY})).status_code == 401
    async with websockets.connect(f"{keyed_tts.ws_url}/v1/tts/stream?api_key={KEY}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "ready"
    async with websockets.connect(f"{keyed_tts.ws_url}/v1/tts/stream?api_key=wrong") as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd.code == 1008
    # uvicorn logs each WebSocket's path with its query on accept: the key must not be in it
    log_text = keyed_tts.log_path.read_text()
    assert "WebSocket /v1/tts/stream?api_key=<redacted>" in log_text
    assert KEY not in log_text


def _closed_by_server(sock: socket.socket, limit_s: float = 30.0) -> bool:
    """True when the server closes the socket (recv → b'') before `limit_s` (generous: the
    server's timeout is 1 s; the limit only keeps a broken server from hanging the test)."""
    sock.settimeout(limit_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_half_open_connections_are_timed_out(keyed_tts):
    with socket.create_connection(("127.0.0.1", keyed_tts.port)) as sock:
        sock.sendall(b"GET /hea")  # half a request line, then nothing
        assert _closed_by_server(sock)
    with socket.create_connection(("127.0.0.1", keyed_tts.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # one full request on keep-alive ...
        assert b"200 OK" in sock.recv(4096)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost:")  # ... then half a head
        assert _closed_by_server(sock)
    # a head that completes in time is served, and a WebSocket outlives the head timeout
    assert httpx.get(keyed_tts.url + "/health").status_code == 200


async def test_an_open_websocket_is_not_cut_by_the_head_timeout(keyed_tts):
    async with websockets.connect(f"{keyed_tts.ws_url}/v1/tts/stream?api_key={KEY}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "ready"
        await asyncio.sleep(2.5)  # past HEADER_TIMEOUT_S=1
        await ws.send(json.dumps({"type": "synthesize", "text": "Still here."}))
        kinds = []
        while "synthesis_complete" not in kinds:
            message = await asyncio.wait_for(ws.recv(), 30)
            if isinstance(message, str):
                kinds.append(json.loads(message)["type"])
        assert "error" not in kinds


def _ready(service) -> httpx.Response:
    return httpx.get(service.url + "/ready", headers=auth(), timeout=30)


def test_tts_ready_is_503_while_redis_is_down_and_200_when_it_is_back(keyed_tts, redis):
    assert _ready(keyed_tts).status_code == 200
    redis.stop()
    try:
        down = _ready(keyed_tts)
        assert down.status_code == 503
        assert down.json()["status"] == "not_ready" and "Redis" in down.json()["reason"]
        assert httpx.get(keyed_tts.url + "/health").status_code == 200  # alive, just not ready
    finally:
        redis.start()
    deadline = time.monotonic() + 30
    while _ready(keyed_tts).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ready(keyed_tts).status_code == 200


def test_listening_beyond_loopback_without_keys_is_a_warning(monkeypatch):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger("voice.server").addHandler(handler)
    try:
        open_config = CommonConfig("0.0.0.0", 8002, (), 30, 60.0, 1 << 20, "INFO", False)
        keyed = CommonConfig("0.0.0.0", 8002, ("k",), 30, 60.0, 1 << 20, "INFO", False)
        for host in ("127.0.0.1", "::1", "localhost"):
            server.warn_if_exposed("tts", host, open_config)
        server.warn_if_exposed("tts", "0.0.0.0", keyed)
        assert stream.getvalue() == ""
        server.warn_if_exposed("tts", "0.0.0.0", open_config)
        server.warn_if_exposed("tts", "192.168.1.20", open_config)
    finally:
        logging.getLogger("voice.server").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["level"] for entry in lines] == ["WARNING", "WARNING"]
    assert "API_KEYS" in lines[0]["msg"] and lines[0]["host"] == "0.0.0.0"
    assert CommonConfig.read.__defaults__ is None  # (signature unchanged)
