"""Issue 9, item 1: no voice id reaches outside the voice store, over REST and WebSocket, for
the directory backend and the Redis one. A planted voice sits right next to the store (and a
symlink inside the store points at it), so a traversal that worked would be seen as a 200, a
served clip or a deleted folder."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import redis as redis_client

from services.common.audio import wav_bytes
from tests.hardening.conftest import json_error, raw_request
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import speak
from tests.tts.wsclient import TTSStream

pytestmark = pytest.mark.usefixtures("espeak")

# (path segment as sent on the wire, what the server sees after uvicorn's unquoting)
BAD_PATH_IDS = [
    "..",
    "%2e%2e",
    ".",
    "..%2Foutside",
    "%2E%2E%2F%2E%2E%2Fetc",
    "voice%0A",
    "voice%0D%0A",
    "a%00b",
    "%2Fetc%2Fpasswd",
    "%2Ftmp",
    "a" * 65,
    ".hidden",
    "%ED%A0%80",  # a lone surrogate's UTF-8 (invalid)
    "outside",  # a symlink inside the store pointing at the planted folder
]
BAD_WS_IDS = ["..", "../x", "../../../x", "../outside", "voice\n", "/etc/passwd", "a\x00b", "a" * 65, ".", "x/"]


def plant_voice(folder, text="A voice planted outside the store."):
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(
        json.dumps({"id": "outside", "name": "planted", "created_at": 0.0, "duration_s": 2.0})
    )
    (folder / "reference.wav").write_bytes(wav_bytes(speak(text, rate=24000), 24000))


@pytest.fixture(scope="module")
def directory_tts(tmp_path_factory):
    base = tmp_path_factory.mktemp("traversal")
    store = base / "store"
    store.mkdir()
    plant_voice(base / "outside")
    (store / "outside").symlink_to(base / "outside", target_is_directory=True)
    (base / "canary.txt").write_text("still here")
    env = {"TTS_ENGINE": "espeak", "TTS_VOICES_DIR": str(store), "REDIS_URL": "", "TTS_VOICE_MIN_S": "1.0"}
    with ServiceProcess("tts", env=env, label="hardening-traversal-dir") as service:
        yield service, base, store


@pytest.fixture(scope="module")
def redis_tts(redis):
    client = redis_client.Redis.from_url(redis.url)
    # a hash in the voice key space under a name no valid id has, and one outside the key space
    meta = json.dumps({"id": "..", "name": "x", "created_at": 0, "duration_s": 2})
    client.hset("tts:voice:..", mapping={"meta": meta})
    client.hset("tts:other", mapping={"meta": "{}"})
    env = {"TTS_ENGINE": "espeak", "REDIS_URL": redis.url, "TTS_VOICE_MIN_S": "1.0"}
    with ServiceProcess("tts", env=env, label="hardening-traversal-redis") as service:
        yield service, client
    client.close()


def tree(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def assert_refused(status, headers, data) -> None:
    assert status in (400, 404), (status, data[:300])
    error = json_error(status, headers, data)
    assert error["code"] in ("invalid_voice_id", "unknown_voice", "not_found"), error


@pytest.mark.parametrize("backend", ["directory", "redis"])
def test_rest_voice_routes_refuse_ids_that_leave_the_store(backend, request):
    if backend == "directory":
        service, base, store = request.getfixturevalue("directory_tts")
        before = tree(base)
    else:
        service, client = request.getfixturevalue("redis_tts")
        keys_before = sorted(client.keys("*"))
    for segment in BAD_PATH_IDS:
        for method in ("GET", "DELETE"):
            assert_refused(*raw_request(service.port, method, f"/v1/voices/{segment}"))
    # the id as a form field (registration) and as the speech `voice`
    clip = wav_bytes(speak("Registering under a traversal id.", rate=24000), 24000)
    for bad in ("../evil", "..", "voice\n", "/tmp/evil", "a" * 65):
        r = httpx.post(service.url + "/v1/voices", data={"id": bad}, files={"file": ("c.wav", clip)}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_voice_id", (bad, r.text)
        r = httpx.post(service.url + "/v1/audio/speech", json={"model": "x", "input": "Hi.", "voice": bad}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_voice_id", (bad, r.text)
    if backend == "directory":
        assert tree(base) == before  # nothing removed, nothing written, the planted voice untouched
        assert (base / "canary.txt").read_text() == "still here"
    else:
        assert sorted(client.keys("*")) == keys_before
    assert httpx.get(service.url + "/health").status_code == 200


async def _ws_bad_ids(service, ids: list[str]) -> None:
    stream = await TTSStream.open(service.ws_url)
    try:
        for bad in ids:
            await stream.send(type="synthesize", text="Read a clip from outside.", voice_id=bad)
            error = (await stream.until("error", "synthesis_complete"))[-1]
            assert error["type"] == "error" and error["code"] in ("invalid_voice_id", "unknown_voice"), (bad, error)
            clip = wav_bytes(speak("Register outside the store.", rate=24000), 24000)
            await stream.send(type="config", voice_id=bad)
            error = (await stream.until("error", "ready"))[-1]
            assert error["type"] == "error" and error["code"] in ("invalid_voice_id", "unknown_voice"), (bad, error)
            await stream.send(type="register_voice", voice_id=bad, reference_audio=base64.b64encode(clip).decode())
            error = (await stream.until("error", "voice_registered"))[-1]
            assert error["type"] == "error" and error["code"] in ("invalid_voice_id", "bad_voice_id"), (bad, error)
        # the session goes on
        await stream.send(type="synthesize", text="Still working.")
        assert (await stream.until("synthesis_complete", "error"))[-1]["type"] == "synthesis_complete"
    finally:
        await stream.close()


async def test_websocket_refuses_ids_that_leave_the_directory_store(directory_tts):
    service, base, store = directory_tts
    before = tree(base)
    await _ws_bad_ids(service, [*BAD_WS_IDS, "outside"])  # "outside": the symlink out of the store
    assert tree(base) == before  # no conditionals file written next to the planted clip


async def test_websocket_refuses_ids_outside_the_redis_key_space(redis_tts):
    service, client = redis_tts
    keys_before = sorted(client.keys("*"))
    await _ws_bad_ids(service, BAD_WS_IDS)
    assert sorted(client.keys("*")) == keys_before
    assert client.hkeys("tts:voice:..") == [b"meta"]  # no conditionals written under the planted key


def test_a_valid_voice_still_round_trips_in_the_directory_store(directory_tts):
    service, base, store = directory_tts
    clip = wav_bytes(speak("A perfectly ordinary voice for this test.", rate=24000), 24000)
    r = httpx.post(service.url + "/v1/voices", data={"id": "fine.voice-1"}, files={"file": ("c.wav", clip)}, timeout=60)
    assert r.status_code == 201, r.text
    assert (store / "fine.voice-1" / "reference.wav").is_file()
    assert httpx.get(service.url + "/v1/voices/fine.voice-1").json()["id"] == "fine.voice-1"
    ids = [v["id"] for v in httpx.get(service.url + "/v1/voices").json()["data"]]
    assert "fine.voice-1" in ids and "outside" not in ids  # the symlink is not listed as a voice
    assert httpx.delete(service.url + "/v1/voices/fine.voice-1").status_code == 200
    assert not (store / "fine.voice-1").exists()
    assert (base / "outside" / "reference.wav").is_file()
