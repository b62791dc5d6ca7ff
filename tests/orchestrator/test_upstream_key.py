"""UPSTREAM_API_KEY: the session fixtures' ASR and TTS run with API_KEYS, so every chain test
already talks through the orchestrator's key; here, that the services really refuse a missing key,
and that a wrong one reaches the client as a clear error instead of a vague "unreachable"."""

from __future__ import annotations

import pytest

from clients.voice import AgentStream, ASRStream, StreamClosed, TTSStream
from services.common.protocol.agent import FrameType
from tests.helpers.procs import ServiceProcess

from .conftest import collect, is_done, orchestrator_env


async def test_services_refuse_a_missing_key_and_the_orchestrator_sends_its_own(orchestrator, asr_service, tts_service):
    for stream in (ASRStream(asr_service.ws_url), TTSStream(tts_service.ws_url)):
        with pytest.raises(StreamClosed) as refused:
            await stream.connect()
        assert refused.value.code == 1008, stream.url

    async with AgentStream(orchestrator.ws_url) as agent:
        ready = await agent.start()
        assert (ready["asr"], ready["tts"]) == ("up", "up")
        await agent.send_text("hello with a key")
        t = await collect(agent, is_done)
    assert not t.errors() and t.of(FrameType.TTS_AUDIO) and t.of(FrameType.LLM_CHUNK)


async def test_a_wrong_upstream_key_is_reported_as_unauthorized(asr_service, tts_service, claude):
    env = {**orchestrator_env(asr_service.ws_url, tts_service.ws_url, claude), "UPSTREAM_API_KEY": "wrong-key"}
    with ServiceProcess("orchestrator", env, label="orch-wrong-key") as orch:
        async with AgentStream(orch.ws_url) as agent:
            ready = await agent.start()
            assert (ready["asr"], ready["tts"]) == ("down", "down")
            t = await collect(agent, lambda f, t: len(t.errors()) >= 2, timeout=15)
            errors = {e["code"]: e for e in t.errors()}
            assert set(errors) == {"asr_unauthorized", "tts_unauthorized"}
            for error in errors.values():
                assert error["fatal"] is False and "UPSTREAM_API_KEY" in error["message"], error

            # the session itself goes on: a typed turn is answered in text, with the reason again
            await agent.send_text("can you hear me?")
            t = await collect(agent, is_done)
            assert "".join(f.text() for f in t.of(FrameType.LLM_CHUNK)) == claude.reply
            assert not t.of(FrameType.TTS_AUDIO) and "tts_unauthorized" in [e["code"] for e in t.errors()]
        log = orch.log_path.read_text()
    assert '"upstream unauthorized"' in log and "wrong-key" not in log, "the key itself is never logged"
