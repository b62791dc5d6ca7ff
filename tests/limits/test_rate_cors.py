"""Rate limiting and CORS on a real TTS process (espeak engine) over real sockets.

One process serves both: API keys on, 3 requests (or WebSocket opens) a client, refilled at one a
minute, so nothing refills during the test; each test spends the bucket of its own key."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from tests.helpers.procs import ServiceProcess

KEYS = ["k-rest", "k-ws", "k-other", "k-cors"]
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def tts(espeak):
    env = {
        "TTS_ENGINE": "espeak",
        "API_KEYS": ",".join(KEYS),
        "RATE_LIMIT_PER_MIN": "1",
        "RATE_LIMIT_BURST": "3",
        "CORS_ORIGINS": ORIGIN,
    }
    service = ServiceProcess("tts", env=env, label="limits-rate-cors").start()
    yield service
    service.stop()


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_rest_429_with_retry_after_per_key(tts):
    codes = [httpx.get(tts.url + "/v1/voices", headers=auth("k-rest")).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    refused = httpx.get(tts.url + "/v1/voices", headers=auth("k-rest"))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited" and "retry in" in refused.json()["error"]["message"]
    # another client (key) has its own bucket; probes are not rate limited
    assert httpx.get(tts.url + "/v1/voices", headers=auth("k-other")).status_code == 200
    assert all(httpx.get(tts.url + "/health").status_code == 200 for _ in range(5))
    assert httpx.get(tts.url + "/ready", headers=auth("k-rest")).status_code == 200


async def test_websocket_refused_at_admission_with_1008_and_reason(tts):
    url = tts.ws_url + "/v1/tts/stream?api_key=k-ws"
    for _ in range(3):
        async with websockets.connect(url) as ws:
            ready = await asyncio.wait_for(ws.recv(), 30)
            assert '"ready"' in ready
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd.code == 1008
    assert "rate limit" in info.value.rcvd.reason and "retry in" in info.value.rcvd.reason


def test_cors_preflight_and_simple_request(tts):
    preflight = httpx.options(
        tts.url + "/v1/audio/speech",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200  # answered without a key: browsers send none on a preflight
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    simple = httpx.get(tts.url + "/v1/voices", headers={**auth("k-cors"), "Origin": ORIGIN})
    assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == ORIGIN
    assert "retry-after" in simple.headers.get("access-control-expose-headers", "").lower()
    # an error answer carries the header too, so the page can read it
    unauthorized = httpx.get(tts.url + "/v1/voices", headers={"Origin": ORIGIN})
    assert unauthorized.status_code == 401 and unauthorized.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.get(tts.url + "/v1/voices", headers={**auth("k-cors"), "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    bad_preflight = httpx.options(
        tts.url + "/v1/audio/speech",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert bad_preflight.status_code == 400


def test_no_cors_headers_by_default(espeak):
    with ServiceProcess("tts", env={"TTS_ENGINE": "espeak"}, label="limits-no-cors") as tts:
        response = httpx.get(tts.url + "/v1/voices", headers={"Origin": ORIGIN})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
        # and no rate limit by default
        assert all(httpx.get(tts.url + "/v1/voices").status_code == 200 for _ in range(20))
