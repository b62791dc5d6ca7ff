"""Faults: Claude errors → an apology and a finished turn; ASR/TTS killed → error frames and the
session recovers when the service is back; client disconnect → nothing left open upstream."""

from __future__ import annotations

import signal

import httpx
import pytest

from clients.voice import AgentStream, StreamClosed
from services.common.protocol.agent import FrameType
from tests.helpers.procs import ServiceProcess

from .conftest import UPSTREAM_KEY, collect, eventually, gauge, http_get, is_done

APOLOGY_START = "Sorry, I'm having trouble"


@pytest.mark.parametrize(
    ("mode", "code"),
    [("429", "llm_rate_limited"), ("529", "llm_overloaded"), ("midstream_error", "llm_overloaded")],
)
async def test_claude_errors_become_a_spoken_apology(orchestrator, claude, mode, code):
    claude.mode = mode
    async with AgentStream(orchestrator.ws_url) as agent:
        await agent.start()
        await agent.send_text("hello?")
        t = await collect(agent, is_done, timeout=30)
        assert [e["code"] for e in t.errors()] == [code]
        text = "".join(f.text() for f in t.of(FrameType.LLM_CHUNK))
        assert APOLOGY_START in text
        if mode == "midstream_error":
            assert text.startswith("Hello! This is"), "tokens before the error event are kept"
        assert t.of(FrameType.TTS_AUDIO), "the apology is spoken"
        assert t.of(FrameType.DONE)[0].json()["interrupted"] is False

        claude.mode = "ok"  # Claude is back: the same session answers normally
        await agent.send_text("and now?")
        t = await collect(agent, is_done, timeout=30)
        assert not t.errors() and "".join(f.text() for f in t.of(FrameType.LLM_CHUNK)) == claude.reply


async def test_tts_killed_mid_answer_then_restarted(orchestrator, tts_service, claude):
    claude.reply = "First sentence is spoken. " + "Then the speech service dies, but the text goes on. " * 8
    claude.token_delay_s = 0.03
    async with AgentStream(orchestrator.ws_url) as agent:
        await agent.start()
        await agent.send_text("start talking")
        await collect(agent, lambda f, t: f.type == FrameType.TTS_AUDIO, timeout=15)
        tts_service.stop(signal.SIGKILL)  # a crash mid-answer: no close frame
        t = await collect(agent, is_done, timeout=30)
        assert "tts_unavailable" in [e["code"] for e in t.errors()]
        text = "".join(f.text() for f in t.of(FrameType.LLM_CHUNK))
        assert text.rstrip().endswith("the text goes on."), "the answer still streams to the end as text"
        claude.reply = "Hello! This is a test answer. It has three sentences."
        claude.token_delay_s = 0.01

        await agent.send_text("can you hear me?")
        t = await collect(agent, is_done, timeout=30)
        assert "tts_unavailable" in [e["code"] for e in t.errors()]
        assert "".join(f.text() for f in t.of(FrameType.LLM_CHUNK)) == claude.reply, "text still streams"
        assert not t.of(FrameType.TTS_AUDIO)

        ready = await http_get(orchestrator.url + "/ready")
        assert ready.status_code == 503 and "tts" in ready.json()["reason"]

        tts_service.start()  # same port
        t = await collect(agent, lambda f, t: bool(t.events("upstream")), timeout=30)
        assert t.events("upstream")[-1] == {"event": "upstream", "service": "tts", "state": "up"}
        await agent.send_text("and now?")
        t = await collect(agent, is_done, timeout=30)
        assert t.of(FrameType.TTS_AUDIO) and not t.errors()


async def test_asr_down_at_start_and_mid_session_then_back(orchestrator, asr_service, utterance):
    async with AgentStream(orchestrator.ws_url) as first:
        await first.start()
        asr_service.stop(signal.SIGKILL)
        t = await collect(first, lambda f, t: f.type == FrameType.ERROR, timeout=15)
        assert t.errors()[-1]["code"] == "asr_unavailable"

        async with AgentStream(orchestrator.ws_url) as second:  # a new session while ASR is down
            ready = await second.start()  # the session starts anyway: ready, then the error
            assert ready["asr"] == "down" and ready["tts"] == "up"
            t = await collect(second, lambda f, t: f.type == FrameType.ERROR, timeout=10)
            assert t.errors()[-1]["code"] == "asr_unavailable"
            await second.stream_audio(utterance[:16000])  # dropped while ASR is away; no crash

            asr_service.start()
            for agent in (first, second):
                t = await collect(agent, lambda f, t: bool(t.events("upstream")), timeout=60)
                assert t.events("upstream")[-1] == {"event": "upstream", "service": "asr", "state": "up"}
            await second.stream_audio(utterance)
            t = await collect(second, lambda f, t: f.type == FrameType.TRANSCRIPTION and f.is_final, timeout=60)
            assert t.of(FrameType.TRANSCRIPTION)[-1].text().strip()
            await collect(second, is_done, timeout=30)


async def test_client_disconnect_closes_everything_upstream(orchestrator, asr_service, tts_service, claude):
    claude.reply = " ".join(["A long answer that is still streaming when the client goes away."] * 20)
    claude.token_delay_s = 0.05
    aborted = claude.aborted
    agent = AgentStream(orchestrator.ws_url)
    await agent.connect()
    await agent.start()
    await eventually(lambda: gauge(asr_service.url, "voice_asr_active_sessions") >= 1, 10)
    await agent.send_text("talk for a while")
    await collect(agent, lambda f, t: f.type == FrameType.TTS_AUDIO, timeout=30)
    agent.ws.transport.abort()  # vanish without a close frame, mid-answer

    await eventually(lambda: gauge(orchestrator.url, "voice_orchestrator_active_sessions") == 0, 15)
    await eventually(lambda: gauge(asr_service.url, "voice_asr_active_sessions") == 0, 15)
    await eventually(lambda: gauge(tts_service.url, "voice_tts_active_streams") == 0, 15)
    await eventually(lambda: claude.aborted > aborted, 15)  # the Claude stream was closed too


async def test_api_keys_session_limit_and_graceful_shutdown(asr_service, tts_service, claude):
    env = {"ASR_URL": asr_service.ws_url, "TTS_URL": tts_service.ws_url, "ANTHROPIC_API_KEY": "k",
           "ANTHROPIC_BASE_URL": claude.url, "API_KEYS": "secret-1", "MAX_SESSIONS": "1",
           "UPSTREAM_API_KEY": UPSTREAM_KEY}  # fmt: skip
    orch = ServiceProcess("orchestrator", env, label="orch-limits").start()
    try:
        async with httpx.AsyncClient(base_url=orch.url) as http:
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/metrics")).status_code == 401
            assert (await http.get("/")).status_code == 200, "the web page itself is public"
        async with AgentStream(orch.ws_url) as anonymous:
            with pytest.raises(StreamClosed) as closed:
                await anonymous.recv()
            assert closed.value.code == 1008
        async with AgentStream(orch.ws_url, api_key="secret-1") as agent:
            await agent.start()
            async with AgentStream(orch.ws_url, api_key="secret-1") as extra:  # over MAX_SESSIONS=1
                with pytest.raises(StreamClosed) as closed:
                    await extra.recv()
                assert closed.value.code == 1013

            orch.proc.send_signal(signal.SIGTERM)
            t = await collect(agent, lambda f, t: False, timeout=20)  # until the server closes
            # the registry is drained before uvicorn drops sockets: our own error frame + 1001
            assert agent.ws.close_code == 1001
            assert [e["code"] for e in t.errors()] == ["shutting_down"] and all(e["fatal"] for e in t.errors())
        assert orch.proc.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        assert '"session closed"' in orch.log_path.read_text()
        await eventually(lambda: gauge(asr_service.url, "voice_asr_active_sessions") == 0, 10)
        await eventually(lambda: gauge(tts_service.url, "voice_tts_active_streams") == 0, 10)
    finally:
        orch.stop()
