"""The shared receive loop (services.common.ws_endpoint) on a real uvicorn server and socket."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.frames import Frame, Opcode

from services.common.errors import CodedError
from services.common.ws_endpoint import TolerantWebSocketProtocol, WebSocketEndpoint
from tests.helpers.procs import free_port


class Echo(WebSocketEndpoint):
    """Answers each JSON message with its type, raises on request; errors as JSON events."""

    async def on_connect(self) -> None:
        await self.ws.send_text(json.dumps({"type": "ready"}))

    async def on_json(self, data) -> None:
        if data["type"] == "boom":
            raise KeyError("secret user text")
        if data["type"] == "fatal":
            raise CodedError("doomed", "fatal on purpose", fatal=True)
        await self.ws.send_text(json.dumps({"type": "echo", "of": data["type"]}))

    async def send_error(self, error: CodedError) -> None:
        await self.ws.send_text(json.dumps({"type": "error", "code": error.code, "message": error.message}))


async def endpoint(ws) -> None:
    await ws.accept()
    await Echo(ws, max_frame_bytes=65536, idle_timeout_s=1.5).run()


@pytest.fixture
async def server():
    app = Starlette(routes=[WebSocketRoute("/", endpoint)])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws=TolerantWebSocketProtocol, log_level="warning")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    while not srv.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.05)
    yield f"ws://127.0.0.1:{port}/"
    srv.should_exit = True
    await task


async def recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_bad_frames_get_error_events_and_the_session_goes_on(server, caplog):
    async with websockets.connect(server, max_size=None) as ws:
        assert (await recv(ws))["type"] == "ready"
        cases = [
            ("[" * 10_000 + "]" * 10_000, "bad_json"),
            ('{"type": "x", "v": "\\ud800"}', "bad_json"),
            ("nope", "bad_json"),
            ('{"no": 1}', "missing_type"),
            ("x" * 65537, "frame_too_large"),
            (b"\x00", "unexpected_frame"),
        ]
        for message, code in cases:
            await ws.send(message)
            assert (await recv(ws))["code"] == code
        # invalid UTF-8 in a text frame: an error event, not a traceback and a 1007 close
        ws.protocol.send_frame(Frame(Opcode.TEXT, b'{"type": "\xff\xfe"}'))
        ws.send_data()
        assert (await recv(ws))["code"] == "bad_json"
        # an unexpected exception: `internal`, its message kept out of the log
        with caplog.at_level(logging.INFO):
            await ws.send(json.dumps({"type": "boom"}))
            assert (await recv(ws))["code"] == "internal"
        assert "secret user text" not in caplog.text
        await ws.send(json.dumps({"type": "still_here"}))
        assert await recv(ws) == {"type": "echo", "of": "still_here"}
        # a fatal coded error: its event, then close 1011
        await ws.send(json.dumps({"type": "fatal"}))
        assert (await recv(ws))["code"] == "doomed"
        with pytest.raises(websockets.ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1011
    assert "Invalid UTF-8" not in caplog.text


async def test_idle_session_gets_an_error_and_close_1000(server):
    async with websockets.connect(server) as ws:
        assert (await recv(ws))["type"] == "ready"
        error = await recv(ws)
        assert error["code"] == "idle_timeout"
        with pytest.raises(websockets.ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1000 and ws.close_reason == "idle timeout"
