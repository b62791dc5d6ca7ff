"""The per-connection memory bound on the real services: MAX_BUFFERED_TEXT_CHARS on a TTS
session (espeak-ng) and MAX_BUFFERED_AUDIO_SECS on an ASR session (Whisper tiny.en)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence, speak

SENTENCE = "The quick brown fox jumps over the lazy dog and runs along the quiet river bank every morning"


@pytest.fixture(scope="module")
def tts(espeak):
    env = {"TTS_ENGINE": "espeak", "MAX_BUFFERED_TEXT_CHARS": "200"}
    service = ServiceProcess("tts", env=env, label="limits-budget-tts").start()
    yield service
    service.stop()


async def next_json(ws, timeout: float = 60.0) -> dict:
    while True:
        raw = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(raw, str):
            return json.loads(raw)


async def test_tts_text_budget_refuses_then_the_session_goes_on(tts):
    async with websockets.connect(tts.ws_url + "/v1/tts/stream", max_size=None) as ws:
        assert (await next_json(ws))["type"] == "ready"
        # an open incremental request holds its text until `end`: 150 characters without a sentence end
        await ws.send(json.dumps({"type": "text", "request_id": "a", "text": "word " * 30}))
        await ws.send(json.dumps({"type": "text", "request_id": "a", "text": "more " * 20}))  # 250 > 200
        refused = await next_json(ws)
        assert refused["type"] == "error" and refused["code"] == "buffer_full"
        assert "MAX_BUFFERED_TEXT_CHARS" in refused["message"] and refused["fatal"] is False
        await ws.send(json.dumps({"type": "synthesize", "request_id": "b", "text": "x" * 60}))  # 210 > 200
        assert (await next_json(ws))["code"] == "buffer_full"
        await ws.send(json.dumps({"type": "end", "request_id": "a"}))
        done = await next_json(ws)
        while done["type"] == "audio_chunk":
            done = await next_json(ws)
        assert done["type"] == "synthesis_complete" and done["request_id"] == "a"  # what was accepted is spoken
        await ws.send(json.dumps({"type": "synthesize", "request_id": "c", "text": "Now there is room."}))
        done = await next_json(ws)
        while done["type"] == "audio_chunk":
            done = await next_json(ws)
        assert done["type"] == "synthesis_complete" and done["request_id"] == "c"


async def test_asr_turn_reaching_the_audio_budget_is_finalized(models_dir, espeak):
    env = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "1", "MAX_BUFFERED_AUDIO_SECS": "2.5"}
    with ServiceProcess("asr", env=env, label="limits-budget-asr") as asr:
        speech = concat(speak(SENTENCE), silence(0.3))
        assert len(speech) / 16000 > 4.0
        async with websockets.connect(asr.ws_url + "/v1/asr/stream") as ws:
            await ws.send(json.dumps({"type": "config", "turn_detection": {"mode": "none"}}))
            await ws.send((speech * 32767).astype("<i2").tobytes())
            await ws.send(json.dumps({"type": "end"}))
            finals = []
            try:
                while True:
                    event = await next_json(ws)
                    if event["type"] == "final":
                        finals.append(event)
            except websockets.ConnectionClosed:
                pass
    assert len(finals) >= 2  # nothing dropped: the long turn was cut into finals, not refused
    first = finals[0]
    assert first["end_of_turn"]["reason"] == "max_duration"
    assert first["end"] - first["start"] <= 2.5
    # nothing lost: the finals tile the stream, and words from after the first cut are heard
    assert all(b["start"] == pytest.approx(a["end"], abs=0.05) for a, b in zip(finals[:-1], finals[1:], strict=True))
    assert finals[-1]["end"] >= len(speech) / 16000 - 1.0  # the tail is silence
    later = " ".join(f["text"] for f in finals[1:]).lower()
    assert any(word in later for word in ("quiet", "river", "along", "morning")), later
