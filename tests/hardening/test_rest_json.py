"""Issue 9, items 3, 4 and 7 (REST side): every REST body goes through the one guarded JSON
parser, and every REST error, the framework's own 404 / 405 / 500 included, is the one JSON
error shape {"error": {"code", "message"}} (services/common/limits.error_response)."""

from __future__ import annotations

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from services.common.config import CommonConfig
from services.common.server import build_app
from tests.hardening.conftest import json_error, raw_request
from tests.helpers.procs import ServiceProcess

pytestmark = pytest.mark.usefixtures("espeak")

DEEP = b"[" * 10_000 + b"]" * 10_000


@pytest.fixture(scope="module")
def tts(tmp_path_factory):
    env = {"TTS_ENGINE": "espeak", "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("voices")), "REDIS_URL": ""}
    with ServiceProcess("tts", env=env, label="hardening-rest-json") as service:
        yield service


def speech(service, body: bytes, content_type: str = "application/json"):
    return raw_request(service.port, "POST", "/v1/audio/speech", body, {"Content-Type": content_type})


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (DEEP, 400, "bad_json"),
        (b'{"model": "x", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "bad_json"),
        (b'{"model": "x", "input": "Hi.", "voice": "\\ud800"}', 400, "bad_json"),
        (b'{"model": "x", "input": "Hello \\udfff there."}', 400, "bad_json"),
        (b'{"model": "x", "input": "Hi.", "speed": NaN}', 400, "bad_json"),
        (b"\xff\xfe not utf-8", 400, "bad_json"),
        (b"not json", 400, "bad_json"),
        (b"[1, 2]", 400, "bad_json"),
        (b'{"model": "x", "input": "' + b"a" * (2 << 20) + b'"}', 413, "too_large"),
    ],
)
def test_speech_bodies_get_coded_json_errors(tts, body, status, code):
    got_status, headers, data = speech(tts, body)
    assert got_status == status, data[:300]
    assert json_error(got_status, headers, data)["code"] == code


def test_framework_errors_are_json_too(tts):
    status, headers, data = raw_request(tts.port, "GET", "/v1/no/such/route")
    assert status == 404 and json_error(status, headers, data)["code"] == "not_found"
    status, headers, data = raw_request(tts.port, "PUT", "/v1/audio/speech", b"{}")
    assert status == 405 and json_error(status, headers, data)["code"] == "method_not_allowed"
    # and the service still speaks after all of the above
    status, headers, data = speech(tts, b'{"model": "x", "input": "Still fine.", "response_format": "wav"}')
    assert status == 200 and data[:4] == b"RIFF"


def test_an_unhandled_exception_is_a_json_500_not_plain_text():
    async def boom(request):
        raise RuntimeError("a bug somewhere")

    async def ready():
        return True, ""

    config = CommonConfig("127.0.0.1", 0, (), 30, 60.0, 1 << 20, "INFO", False)
    app = build_app([Route("/boom", boom)], config, ready)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "internal"
    assert "a bug" not in response.text  # the exception's message is not shown to the client
