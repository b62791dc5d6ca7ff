"""APIKeyMiddleware and SessionLimiter, on a small Starlette app (in-process ASGI)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.common.auth import APIKeyMiddleware, key_is_valid
from services.common.limits import CapacityError, SessionLimiter, busy_response, error_response


def make_client(keys=("k1", "k2")) -> TestClient:
    async def hello(request):
        return JSONResponse({"ok": True})

    async def ws_endpoint(ws):
        await ws.accept()
        await ws.send_text("hi")
        await ws.close()

    app = Starlette(routes=[Route("/health", hello), Route("/x", hello), WebSocketRoute("/ws", ws_endpoint)])
    app.add_middleware(APIKeyMiddleware, keys=keys)
    return TestClient(app)


def test_http_401_without_a_valid_key():
    client = make_client()
    assert client.get("/health").status_code == 200
    response = client.get("/x")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/x", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/x", headers={"Authorization": "Bearer k2"}).status_code == 200
    assert client.get("/x?api_key=k1").status_code == 401  # the query key is for WebSockets only


def test_websocket_closed_1008_without_a_valid_key():
    client = make_client()
    for url in ("/ws", "/ws?api_key=bad"):
        with client.websocket_connect(url) as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text()
            assert info.value.code == 1008
    with client.websocket_connect("/ws?api_key=k1") as ws:
        assert ws.receive_text() == "hi"


def test_no_keys_means_open():
    assert make_client(keys=()).get("/x").status_code == 200
    assert not key_is_valid("", ("a",)) and not key_is_valid(None, ("a",))


async def test_session_limiter_counts_and_refuses():
    changes, rejects = [], []
    limiter = SessionLimiter(2, on_change=changes.append, on_reject=lambda: rejects.append(1))
    async with limiter.slot():
        async with limiter.slot():
            assert limiter.full
            with pytest.raises(CapacityError):
                async with limiter.slot():
                    pass
        assert not limiter.full
    assert limiter.active == 0
    assert changes == [1, 2, 1, 0] and rejects == [1]


def test_error_shapes():
    busy = busy_response("full", retry_after_s=3)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
    error = error_response(400, "bad_x", "x is bad")
    assert error.status_code == 400 and b'"code":"bad_x"' in error.body
