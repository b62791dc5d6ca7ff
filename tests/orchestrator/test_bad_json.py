"""Hostile JSON on /v1/agent/stream (issue 9 items 3 and 4): a 20 KB frame of 10 000 nested
brackets and lone surrogates in `user_text` each get a 0x07 error with a clear code (not a dropped
connection, not `internal`), and the same session then answers a typed turn in full."""

from __future__ import annotations

from clients.voice import AgentStream
from services.common.protocol.agent import FrameType, pack

from .conftest import collect, is_done

DEEP = b"[" * 10_000 + b"]" * 10_000  # 20 KB: json.loads would recurse past Python's limit


async def _error(agent: AgentStream) -> dict:
    transcript = await collect(agent, lambda f, t: f.type == FrameType.ERROR, timeout=10)
    return transcript.of(FrameType.ERROR)[-1].json()


async def test_deep_nesting_and_lone_surrogates_get_errors_and_the_session_goes_on(orchestrator, claude):
    async with AgentStream(orchestrator.ws_url) as agent:
        await agent.send_raw(pack(FrameType.AUDIO_START, DEEP))  # before start: the config payload
        error = await _error(agent)
        assert (error["code"], error["fatal"]) == ("bad_json", False), error
        assert "nested" in error["message"]

        await agent.start({"mode": "agent"})
        await agent.send_raw(pack(FrameType.EVENT, DEEP))
        assert (await _error(agent))["code"] == "bad_json"
        # a lone surrogate, as a JSON escape (valid UTF-8 bytes, invalid Unicode text)
        await agent.send_raw(pack(FrameType.EVENT, b'{"event": "user_text", "text": "hi \\ud800 there"}'))
        error = await _error(agent)
        assert error["code"] == "bad_json" and "surrogate" in error["message"], error

        before = len(claude.requests)
        await agent.send_text("are you still there?")
        transcript = await collect(agent, is_done)
        assert transcript.of(FrameType.LLM_CHUNK) and transcript.of(FrameType.TTS_AUDIO)
        assert len(claude.requests) == before + 1
        assert not transcript.errors(), transcript.errors()
