"""The voice store shared through a real redis-server by two TTS processes, and what happens
when Redis goes away and comes back."""

from __future__ import annotations

import base64

import httpx
import pytest

from services.common.audio import wav_bytes
from tests.helpers.procs import ServiceProcess
from tests.helpers.redis_server import RedisServer
from tests.helpers.speech import speak
from tests.tts.wsclient import TTSStream

pytestmark = pytest.mark.usefixtures("espeak")


@pytest.fixture(scope="module")
def redis():
    server = RedisServer(label="tts-redis-outage").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(redis):
    env = {"TTS_ENGINE": "espeak", "REDIS_URL": redis.url, "TTS_VOICE_MIN_S": "1.0"}
    a = ServiceProcess("tts", env=env, label="tts-redis-a").start()
    b = ServiceProcess("tts", env=env, label="tts-redis-b").start()
    yield a, b
    a.stop()
    b.stop()


def clip_b64(text: str) -> str:
    return base64.b64encode(wav_bytes(speak(text, rate=24000), 24000)).decode()


async def synthesize(stream: TTSStream, voice_id: str | None) -> dict:
    message = {"type": "synthesize", "text": "Speaking with a shared voice."}
    if voice_id:
        message["voice_id"] = voice_id
    await stream.send(**message)
    return (await stream.until("synthesis_complete", "error"))[-1]


async def test_voice_registered_in_one_process_is_used_by_another_and_survives_redis_outage(redis, replicas):
    a, b = replicas
    on_a = await TTSStream.open(a.ws_url)
    on_b = await TTSStream.open(b.ws_url)
    try:
        await on_a.send(type="register_voice", voice_id="shared", reference_audio=clip_b64("Shared voice reference."))
        assert (await on_a.until("voice_registered", "error"))[-1]["type"] == "voice_registered"

        # process B never saw the registration: it reads the voice from Redis
        async with httpx.AsyncClient() as http:
            assert (await http.get(b.url + "/v1/voices/shared")).status_code == 200
        assert (await synthesize(on_b, "shared"))["type"] == "synthesis_complete"

        redis.stop()
        # a voice B already knows keeps working; built-in voices too
        assert (await synthesize(on_b, "shared"))["type"] == "synthesis_complete"
        assert (await synthesize(on_b, None))["type"] == "synthesis_complete"
        # registration fails cleanly, the session goes on
        await on_a.send(type="register_voice", voice_id="during-outage", reference_audio=clip_b64("Outage clip."))
        error = (await on_a.until("voice_registered", "error", timeout=30))[-1]
        assert error["type"] == "error" and error["code"] == "voice_store_unavailable"
        # a voice B never loaded cannot be resolved: same clear error
        error = await synthesize(on_b, "not-cached")
        assert error["type"] == "error" and error["code"] == "voice_store_unavailable"
        async with httpx.AsyncClient() as http:
            upload = await http.post(
                a.url + "/v1/voices",
                files={"file": ("r.wav", base64.b64decode(clip_b64("Rest outage clip.")), "audio/wav")},
            )
            assert upload.status_code == 503 and upload.json()["error"]["code"] == "voice_store_unavailable"
            # not ready (issue 9: a replica that cannot register voices leaves the rotation), but alive
            assert (await http.get(a.url + "/ready")).status_code == 503
            assert (await http.get(a.url + "/health")).status_code == 200

        redis.start()  # same port, empty (no persistence)
        await on_a.send(type="register_voice", voice_id="after-outage", reference_audio=clip_b64("Back again."))
        assert (await on_a.until("voice_registered", "error", timeout=30))[-1]["type"] == "voice_registered"
        assert (await synthesize(on_b, "after-outage"))["type"] == "synthesis_complete"
    finally:
        await on_a.close()
        await on_b.close()
