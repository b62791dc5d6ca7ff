"""Malformed client frames on /v1/agent/stream: each gets a 0x07 error with a code, and the
session goes on (a turn still completes afterwards)."""

from __future__ import annotations

import httpx

from clients.voice import AgentStream
from services.common.protocol.agent import FrameType, pack

from .conftest import collect, is_done


async def _next_error(agent: AgentStream) -> dict:
    transcript = await collect(agent, lambda f, t: f.type == FrameType.ERROR, timeout=10)
    error = transcript.of(FrameType.ERROR)[-1].json()
    assert error["fatal"] is False and error["message"]
    return error


async def test_bad_frames_get_an_error_and_the_session_goes_on(orchestrator, claude):
    async with AgentStream(orchestrator.ws_url) as agent:
        cases_before_start = [
            (b"\x01", "bad_frame"),  # too short: no flags byte
            (b"\x7f\x00", "unknown_type"),
            (pack(FrameType.AUDIO_CHUNK, b"\x00\x00" * 160), "not_started"),
            (pack(FrameType.AUDIO_END), "not_started"),
            (pack(FrameType.AUDIO_START, b"{not json"), "bad_json"),
            (pack(FrameType.AUDIO_START, {"mode": "karaoke"}), "bad_config"),
            (pack(FrameType.AUDIO_START, {"colour": "blue"}), "unknown_field"),
            (pack(FrameType.AUDIO_START, {"sample_rate": 3}), "bad_config"),
            (pack(FrameType.AUDIO_START, {"turn_detection": {"mode": "psychic"}}), "bad_config"),
        ]
        for data, code in cases_before_start:
            await agent.send_raw(data)
            assert (await _next_error(agent))["code"] == code, data
        await agent.ws.send("a text frame")
        assert (await _next_error(agent))["code"] == "bad_frame"

        ready = await agent.start({"mode": "agent"})
        assert ready["mode"] == "agent" and ready["input_sample_rate"] == 16000
        cases_after_start = [
            (pack(FrameType.AUDIO_CHUNK, b"\x00\x01\x02"), "bad_audio"),  # odd byte count is not s16le
            (pack(FrameType.TTS_AUDIO, b"\x00\x00"), "wrong_direction"),
            (pack(FrameType.AUDIO_START, {}), "already_started"),
            (pack(FrameType.EVENT, {"event": "dance"}), "unknown_event"),
            (pack(FrameType.EVENT, {"event": "user_text", "text": ""}), "bad_text"),
            (pack(FrameType.EVENT, b"\xff\xfe"), "bad_json"),
        ]
        for data, code in cases_after_start:
            await agent.send_raw(data)
            assert (await _next_error(agent))["code"] == code, data

        # the session still works: a typed turn is answered in full
        before = len(claude.requests)
        await agent.send_text("are you still there?")
        transcript = await collect(agent, is_done)
        assert transcript.of(FrameType.LLM_CHUNK) and transcript.of(FrameType.TTS_AUDIO)
        assert len(claude.requests) == before + 1


async def test_health_ready_metrics_and_the_web_page(orchestrator):
    async with httpx.AsyncClient(base_url=orchestrator.url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/ready")).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert "voice_orchestrator_active_sessions" in metrics
        page = await http.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert (await http.get("/v1/agent/stream")).status_code in (400, 404, 426)  # WS only, not static
