"""Malformed client input: each gets an error event with a code and a message; the session goes on."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import websockets

from services.common.audio import encode
from tests.asr.conftest import COMPLETE, said
from tests.asr.streaming import StreamResult, collect
from tests.helpers.speech import concat, silence


async def next_event(ws, timeout: float = 10.0) -> dict:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] != "partial":
            return event


async def expect_error(ws, code: str) -> dict:
    event = await next_event(ws)
    assert event["type"] == "error", event
    assert event["code"] == code, event
    assert event["message"] and event["fatal"] is False
    return event


async def test_bad_messages_get_errors_and_the_session_goes_on(asr):
    async with websockets.connect(asr.ws_url + "/v1/asr/stream", max_size=None) as ws:
        ready = await next_event(ws)
        assert ready["type"] == "ready"
        cases = [
            ("not json at all", "bad_json"),
            ("[1, 2]", "bad_json"),
            (json.dumps({"no": "type"}), "missing_type"),
            (json.dumps({"type": "transcribe_please"}), "unknown_type"),
            (json.dumps({"type": "config", "colour": "blue"}), "unknown_field"),
            (json.dumps({"type": "config", "sample_rate": 0}), "bad_config"),
            (json.dumps({"type": "config", "encoding": "flac"}), "bad_config"),
            (json.dumps({"type": "config", "turn_detection": {"mode": "psychic"}}), "bad_config"),
            (json.dumps({"type": "config", "turn_detection": {"stop_secs": -1}}), "bad_config"),
            (json.dumps({"type": "flush", "now": True}), "unknown_field"),
        ]
        for message, code in cases:
            await ws.send(message)
            error = await expect_error(ws, code)
            assert error["session_id"] == ready["session_id"]
        # keepalive is silent: the next event answers the message after it
        await ws.send(json.dumps({"type": "keepalive"}))
        await ws.send("{}")
        await expect_error(ws, "missing_type")
        # config may be sent again before audio; the last one wins
        await ws.send(json.dumps({"type": "config", "sample_rate": 16000, "turn_detection": {"mode": "none"}}))
        assert (await next_event(ws))["config"]["turn_detection"]["mode"] == "none"
        await ws.send(json.dumps({"type": "config", "sample_rate": 16000, "turn_detection": {"mode": "vad"}}))
        assert (await next_event(ws))["config"]["turn_detection"]["mode"] == "vad"
        # bad frames
        await ws.send(b"\x01\x02\x03")  # odd-length pcm_s16le
        await expect_error(ws, "bad_frame")
        await ws.send(b"")
        await expect_error(ws, "empty_frame")
        await ws.send(b"\x00" * (1024 * 1024 + 2))  # over MAX_FRAME_BYTES (1 MiB)
        await expect_error(ws, "frame_too_large")
        # real audio still works: a turn ends in a final
        speech = concat(silence(0.3), said(COMPLETE), silence(0.8))
        await ws.send(encode(speech[:3200], "pcm_s16le"))
        await ws.send(json.dumps({"type": "config", "sample_rate": 8000}))  # after audio: refused, kept
        await expect_error(ws, "config_too_late")
        await ws.send(encode(speech[3200:], "pcm_s16le"))
        types = []
        while "final" not in types:
            types.append((await next_event(ws))["type"])
        assert types == ["speech_start", "speech_end", "final"]
        # end with an open turn, then audio after end: an error, then the last final, then close 1000
        await ws.send(encode(said(COMPLETE), "pcm_s16le"))
        await ws.send(json.dumps({"type": "end"}))
        await ws.send(encode(np.zeros(1600, np.float32), "pcm_s16le"))
        rest = StreamResult()
        await asyncio.wait_for(collect(ws, rest), 30)
    assert rest.close_code == 1000
    kinds = [e["type"] for e in rest.events if e["type"] not in ("partial", "error")]
    assert kinds == ["speech_start", "speech_end", "final"]
    assert rest.of("error")[0]["code"] == "ended"
    assert rest.finals[0]["end_of_turn"]["reason"] == "end"


async def test_audio_before_config_uses_the_defaults(asr):
    """No config at all: pcm_s16le 16 kHz and the server's turn defaults."""
    async with websockets.connect(asr.ws_url + "/v1/asr/stream") as ws:
        ready = await next_event(ws)
        assert ready["config"]["encoding"] == "pcm_s16le" and ready["config"]["sample_rate"] == 16000
        await ws.send(encode(concat(silence(0.3), said(COMPLETE), silence(0.5)), "pcm_s16le"))
        await ws.send(json.dumps({"type": "flush"}))
        types = []
        while "final" not in types:
            types.append((await next_event(ws))["type"])
        assert types[0] == "speech_start" and types[-2:] == ["speech_end", "final"]


async def test_process_survives_abrupt_disconnects(asr):
    """Clients that vanish mid-turn (no close handshake) leave the service healthy."""
    import httpx

    for _ in range(3):
        ws = await websockets.connect(asr.ws_url + "/v1/asr/stream")
        await ws.send(encode(said(COMPLETE), "pcm_s16le"))
        ws.transport.abort()
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient() as client:
        assert (await client.get(asr.url + "/health")).status_code == 200
        assert (await client.get(asr.url + "/ready")).status_code == 200
    assert asr.proc.poll() is None
