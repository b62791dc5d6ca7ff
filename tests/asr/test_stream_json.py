"""Issue 9 (3, 4, 7) on `/v1/asr/stream`: deep nesting, lone surrogates and invalid UTF-8 text
frames get a `bad_json` error event and the session goes on (no drop, no traceback in the log)."""

from __future__ import annotations

import asyncio
import json

import websockets
from websockets.frames import Frame, Opcode


async def next_error(ws) -> dict:
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event["type"] == "error":
            return event


async def test_hostile_text_frames_get_bad_json_and_the_session_goes_on(asr):
    before = asr.log_path.read_text(errors="replace")
    async with websockets.connect(asr.ws_url + "/v1/asr/stream", max_size=None) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send("[" * 10_000 + "]" * 10_000)
        assert (await next_error(ws))["code"] == "bad_json"
        await ws.send('{"type": "config", "language": "\\ud800"}')
        assert (await next_error(ws))["code"] == "bad_json"
        ws.protocol.send_frame(Frame(Opcode.TEXT, b'{"type": "flush\xff"}'))
        ws.send_data()
        error = await next_error(ws)
        assert error["code"] == "bad_json" and error["session_id"] == ready["session_id"]
        await ws.send(json.dumps({"type": "config", "turn_detection": {"mode": "none"}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"  # still the same session
    added = asr.log_path.read_text(errors="replace")[len(before) :]
    assert "Traceback" not in added and "Invalid UTF-8" not in added
