"""Hardening regression tests: real services as subprocesses on loopback (espeak TTS, the real
Whisper tiny.en ASR), a real redis-server, raw sockets where a client library would tidy up
what an attacker sends."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.helpers.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis():
    server = RedisServer(label="hardening-redis").start()
    yield server
    server.stop()


def raw_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request with the path sent byte for byte (httpx would normalise `..` and encode NUL)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data
    finally:
        conn.close()


def json_error(status: int, headers: dict, data: bytes) -> dict:
    """The one REST error shape: a JSON body {"error": {"code", "message"}}."""
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, data[:200])
    body = json.loads(data)
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"], body
    return body["error"]
