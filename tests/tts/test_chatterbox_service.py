"""The TTS service itself on the chatterbox engine (the generated random-weight checkpoint, real
chatterbox-tts classes): voice cloning over the WebSocket, streamed chunks with their binary
frames, cancel. The engine's own properties (exact lengths, smooth joins, voice isolation) are
covered in test_chatterbox_engine.py; this checks the service wiring around it."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
import websockets

from services.common.audio import wav_bytes
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import speak

pytestmark = pytest.mark.usefixtures("espeak")


@pytest.fixture(scope="module")
def chatterbox_service(chatterbox_dir, tmp_path_factory):
    env = {
        "TTS_ENGINE": "chatterbox",
        "TTS_MODEL_DIR": str(chatterbox_dir),
        "TTS_DEVICE": "cpu",
        "TTS_FIRST_CHUNK_TOKENS": "6",
        "TTS_CHUNK_TOKENS": "8",
        "TTS_CONTEXT_TOKENS": "4",
        "TTS_MAX_NEW_TOKENS": "24",
        "TTS_CFM_STEPS": "2",
        "TTS_VOICE_MIN_S": "1.0",
        "REDIS_URL": "",
        "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("voices")),
    }
    with ServiceProcess("tts", env=env, label="tts-chatterbox") as service:
        yield service


async def next_json(ws) -> dict:
    while True:
        message = await asyncio.wait_for(ws.recv(), 120)
        if isinstance(message, str):
            return json.loads(message)
        raise AssertionError(f"unexpected binary frame of {len(message)} bytes")


async def test_cloned_voice_streams_chunks_then_cancel_stops(chatterbox_service):
    reference = base64.b64encode(wav_bytes(speak("This is my reference voice for cloning."), 16000)).decode()
    async with websockets.connect(chatterbox_service.ws_url + "/v1/tts/stream", max_size=None) as ws:
        ready = await next_json(ws)
        assert ready["type"] == "ready" and ready["engine"] == "chatterbox" and ready["sample_rate"] == 24000

        await ws.send(json.dumps({"type": "register_voice", "voice_id": "me", "reference_audio": reference}))
        assert await next_json(ws) == {"type": "voice_registered", "voice_id": "me", "session_id": ready["session_id"]}

        await ws.send(json.dumps({"type": "synthesize", "request_id": "r1", "text": "Hello there.", "voice_id": "me"}))
        chunks: list[np.ndarray] = []
        while True:
            event = await next_json(ws)
            if event["type"] == "synthesis_complete":
                break
            assert event["type"] == "audio_chunk" and event["chunk_id"] == len(chunks), event
            frame = await asyncio.wait_for(ws.recv(), 30)
            assert isinstance(frame, bytes)  # exactly one binary frame follows each audio_chunk
            audio = np.frombuffer(frame, dtype="<f4")
            assert abs(len(audio) / 24000 * 1000 - event["duration_ms"]) < 1.0
            chunks.append(audio)
        assert event["request_id"] == "r1" and event["chunks_sent"] == len(chunks) >= 2
        assert 0 < event["first_audio_ms"] and np.all(np.isfinite(np.concatenate(chunks)))
        assert abs(sum(len(c) for c in chunks) / 24 - event["total_duration_ms"]) < 2.0

        text = "A longer request that will be cancelled after its first chunk arrives."
        await ws.send(json.dumps({"type": "synthesize", "request_id": "r2", "text": text, "voice_id": "me"}))
        first = await next_json(ws)
        assert first["type"] == "audio_chunk" and first["request_id"] == "r2"
        await ws.recv()  # its audio
        await ws.send(json.dumps({"type": "cancel", "request_id": "r2"}))
        late_chunks = 0
        while True:
            message = await asyncio.wait_for(ws.recv(), 60)
            if isinstance(message, bytes):
                continue
            event = json.loads(message)
            if event["type"] == "cancelled":
                break
            assert event["type"] == "audio_chunk", event
            late_chunks += 1
        assert event["request_id"] == "r2" and late_chunks <= 1  # stops within one chunk
