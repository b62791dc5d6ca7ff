"""The whole chain for real: espeak speech → ASR → fake Claude (real anthropic SDK) → TTS →
frames back, with the latency waterfall; direct mode; the fast acknowledgment."""

from __future__ import annotations

import numpy as np

from clients.voice import AgentStream, pcm16_samples
from services.common.protocol.agent import WATERFALL_STAGES, FrameType
from tests.helpers.procs import ServiceProcess

from .conftest import UPSTREAM_KEY, collect, http_get, is_done, until_played


def _assert_full_waterfall(done: dict, skip: tuple[str, ...] = ()) -> None:
    stages = done["stages_ms"]
    assert set(stages) == set(WATERFALL_STAGES)
    present = [s for s in WATERFALL_STAGES if s not in skip]
    values = [stages[s] for s in present]
    assert all(v is not None for v in values), stages
    assert stages["speech_end"] == 0.0
    assert values == sorted(values), f"stages not monotonic: {stages}"
    for s in skip:
        assert stages[s] is None


async def test_spoken_turn_runs_the_whole_chain(orchestrator, claude, utterance):
    before = len(claude.requests)
    async with AgentStream(orchestrator.ws_url) as agent:
        ready = await agent.start({"sample_rate": 16000})
        assert ready["sample_rate"] == 16000 and ready["llm"] == "claude:claude-test"
        await agent.stream_audio(utterance)
        t = await collect(agent, is_done, timeout=60)

    assert t.events("speech_start"), "ASR speech_start forwarded as an event"
    finals = [f for f in t.of(FrameType.TRANSCRIPTION) if f.is_final]
    assert len(finals) == 1 and finals[0].text().strip()
    first = {k: t.index(k) for k in (FrameType.LLM_CHUNK, FrameType.TTS_AUDIO, FrameType.DONE)}
    assert t.frames.index(finals[0]) < first[FrameType.LLM_CHUNK] < first[FrameType.TTS_AUDIO] < first[FrameType.DONE]

    assert "".join(f.text() for f in t.of(FrameType.LLM_CHUNK)) == claude.reply
    audio = np.concatenate([pcm16_samples(f) for f in t.of(FrameType.TTS_AUDIO)])
    assert len(audio) / 16000 > 1.0, "three sentences of speech last more than a second"
    assert float(np.sqrt(np.mean(audio**2))) > 0.01, "agent audio is not silence"

    done = t.of(FrameType.DONE)[0].json()
    assert done["turn"] == 1 and done["mode"] == "agent" and done["interrupted"] is False
    _assert_full_waterfall(done)

    metrics = (await http_get(orchestrator.url + "/metrics")).text
    assert 'voice_orchestrator_stage_seconds_count{stage="first_audio_sent"}' in metrics
    assert "voice_orchestrator_first_audio_seconds_count" in metrics

    assert len(claude.requests) == before + 1
    request = claude.requests[-1]
    assert request["stream"] is True and request["model"] == "claude-test" and request["system"]
    assert request["messages"] == [{"role": "user", "content": finals[0].text().strip()}]


async def test_history_carries_the_previous_answer(orchestrator, claude):
    claude.reply = "First answer, in full."
    async with AgentStream(orchestrator.ws_url) as agent:
        ready = await agent.start()
        await agent.send_text("first question")
        first = await collect(agent, is_done)
        await until_played(first, ready["sample_rate"])  # a question asked over the answer would cut it
        claude.reply = "Second answer."
        await agent.send_text("second question")
        t = await collect(agent, is_done)
    assert not t.events("interrupted")
    assert claude.requests[-1]["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "First answer, in full."},
        {"role": "user", "content": "second question"},
    ]
    assert t.of(FrameType.DONE)[0].json()["turn"] == 2


async def test_direct_mode_speaks_the_users_words_back(orchestrator, claude, utterance):
    before = len(claude.requests)
    async with AgentStream(orchestrator.ws_url) as agent:
        ready = await agent.start({"mode": "direct"})
        assert ready["mode"] == "direct" and ready["llm"] is None
        await agent.stream_audio(utterance)
        t = await collect(agent, is_done, timeout=60)
    assert not t.of(FrameType.LLM_CHUNK)
    assert len(claude.requests) == before, "direct mode never calls the LLM"
    final = next(f for f in t.of(FrameType.TRANSCRIPTION) if f.is_final)
    assert t.frames.index(final) < t.index(FrameType.TTS_AUDIO)
    assert sum(len(f.payload) for f in t.of(FrameType.TTS_AUDIO)) > 0
    _assert_full_waterfall(t.of(FrameType.DONE)[0].json(), skip=("llm_first_token",))


async def test_fast_acknowledgment_is_flagged_and_spoken_first(orchestrator, claude):
    claude.ttft_s = 1.5  # a slow model: the acknowledgment fills the gap
    async with AgentStream(orchestrator.ws_url) as agent:
        await agent.start({"ack": True})
        await agent.send_text("hello")
        t = await collect(agent, is_done)
    chunks = t.of(FrameType.LLM_CHUNK)
    assert chunks[0].needs_followup and chunks[0].text() == "Mm-hmm."
    assert not any(c.needs_followup for c in chunks[1:])
    assert "".join(c.text() for c in chunks[1:]) == claude.reply
    # the acknowledgment's audio arrives before Claude's first token could have
    assert t.index(FrameType.TTS_AUDIO) < t.frames.index(chunks[1])
    done = t.of(FrameType.DONE)[0].json()
    assert done["stages_ms"]["first_audio_sent"] < done["stages_ms"]["llm_first_token"]


async def test_without_an_api_key_the_labelled_demo_responder_answers(asr_service, tts_service):
    env = {"ASR_URL": asr_service.ws_url, "TTS_URL": tts_service.ws_url, "ANTHROPIC_API_KEY": "",
           "UPSTREAM_API_KEY": UPSTREAM_KEY}  # fmt: skip
    with ServiceProcess("orchestrator", env, label="orch-demo") as orch:
        async with AgentStream(orch.ws_url) as agent:
            ready = await agent.start()
            assert ready["llm"] == "demo"
            await agent.send_text("hello there")
            t = await collect(agent, is_done)
        log = orch.log_path.read_text()
    text = "".join(f.text() for f in t.of(FrameType.LLM_CHUNK))
    assert text.startswith("This is the offline demo responder.") and "ANTHROPIC_API_KEY" in text
    assert t.of(FrameType.TTS_AUDIO)
    assert "ANTHROPIC_API_KEY not set" in log and '"WARNING"' in log
