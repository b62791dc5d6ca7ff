"""POST /v1/audio/speech through the official openai SDK, every response_format decoded back with
PyAV; the voice REST API; 4xx answers for bad requests. Runs against a real espeak TTS process."""

from __future__ import annotations

import io

import av
import httpx
import numpy as np
import openai
import pytest

from services.common.audio import wav_bytes
from tests.helpers.speech import speak

pytestmark = pytest.mark.usefixtures("espeak")

TEXT = "Hello from the speech endpoint. This is a second sentence."


@pytest.fixture(scope="module")
def client(espeak_service):
    return openai.OpenAI(base_url=espeak_service.url + "/v1", api_key="unused", max_retries=0)


def decoded_duration(data: bytes, fmt: str) -> tuple[int, float]:
    if fmt == "pcm":  # raw s16le 24 kHz, no container: PyAV needs the format named
        container = av.open(io.BytesIO(data), format="s16le", options={"sample_rate": "24000", "ch_layout": "mono"})
    else:
        container = av.open(io.BytesIO(data))
    with container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return stream.rate, samples / stream.rate


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3", "opus", "flac", "aac"])
def test_every_response_format_decodes(client, fmt):
    response = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format=fmt)
    rate, seconds = decoded_duration(response.content, fmt)
    assert rate == (48000 if fmt == "opus" else 24000)  # Ogg Opus always decodes at 48 kHz
    assert 1.5 < seconds < 20


def test_streaming_response_arrives_in_pieces(client):
    parts = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT * 3, response_format="wav"
    ) as response:
        assert response.headers["content-type"].startswith("audio/wav")
        for part in response.iter_bytes():
            parts.append(part)
    data = b"".join(parts)
    assert len(parts) > 1
    rate, seconds = decoded_duration(data, "wav")
    assert rate == 24000 and seconds > 4


def test_speed_changes_the_duration(client):
    normal = decoded_duration(
        client.audio.speech.create(model="x", voice="alloy", input=TEXT, response_format="wav").content, "wav"
    )[1]
    fast = decoded_duration(
        client.audio.speech.create(model="x", voice="alloy", input=TEXT, response_format="wav", speed=2.0).content,
        "wav",
    )[1]
    assert fast < normal * 0.75


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "x", "voice": "alloy", "input": ""}, 400, "empty_text"),
        ({"model": "x", "voice": "alloy", "input": "   "}, 400, "empty_text"),
        ({"model": "x", "voice": "alloy", "input": "x" * 2001}, 400, "text_too_long"),
        ({"model": "x", "voice": "nobody", "input": "Hi."}, 404, "unknown_voice"),
        ({"model": "x", "voice": "alloy", "input": "Hi.", "response_format": "ogg"}, 400, "bad_response_format"),
        ({"model": "x", "voice": "alloy", "input": "Hi.", "speed": 9}, 400, "bad_parameter"),
    ],
)
def test_bad_speech_requests_get_4xx(espeak_service, body, status, code):
    response = httpx.post(espeak_service.url + "/v1/audio/speech", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_openai_sdk_raises_on_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="x", voice="alloy", input="  ", response_format="wav")


def test_voice_crud(espeak_service):
    url = espeak_service.url
    clip = wav_bytes(speak("A reference clip sent over REST.", rate=24000), 24000)
    created = httpx.post(
        url + "/v1/voices", files={"file": ("ref.wav", clip, "audio/wav")}, data={"id": "rest-v", "name": "Rest"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "rest-v" and created.json()["duration_s"] > 1
    assert httpx.get(url + "/v1/voices/rest-v").json()["name"] == "Rest"
    ids = [v["id"] for v in httpx.get(url + "/v1/voices").json()["data"]]
    assert "rest-v" in ids
    assert ids == [v["id"] for v in httpx.get(url + "/v1/audio/voices").json()["data"]]
    spoken = httpx.post(
        url + "/v1/audio/speech", json={"model": "x", "voice": "rest-v", "input": "Hi.", "response_format": "wav"}
    )
    assert spoken.status_code == 200 and decoded_duration(spoken.content, "wav")[1] > 0
    assert httpx.delete(url + "/v1/voices/rest-v").status_code == 200
    assert httpx.get(url + "/v1/voices/rest-v").status_code == 404
    assert httpx.delete(url + "/v1/voices/rest-v").status_code == 404


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"this is not audio at all", "bad_audio"),
        (None, "reference_too_short"),
    ],
)
def test_bad_reference_uploads(espeak_service, payload, code):
    if payload is None:
        payload = wav_bytes(np.zeros(2400, dtype=np.float32) + 0.1, 24000)
    response = httpx.post(espeak_service.url + "/v1/voices", files={"file": ("ref.wav", payload, "audio/wav")})
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_default_voice_alias_works_on_every_engine(espeak_service):
    """The client library's default voice is "default": espeak has no voice of that name, so the
    alias must resolve to the engine's default voice rather than 404."""
    import asyncio

    from clients.voice import speech

    data = asyncio.run(speech(espeak_service.url, "Default voice.", response_format="wav"))
    rate, seconds = decoded_duration(data, "wav")
    assert rate == 24000 and seconds > 0.3
