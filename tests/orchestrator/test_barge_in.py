"""Barge-in: the user speaks while the agent is answering, or while its answer is still playing
after `done` → the Claude stream and TTS stop, the client is told to clear playback, and the
history keeps only the answer text that was played (by the browser transport's playback clock)."""

from __future__ import annotations

import asyncio
import time

from clients.voice import AgentStream
from services.common.protocol.agent import FrameType

from .conftest import collect, eventually, is_done

LONG_REPLY = " ".join(
    f"This is sentence number {n} of a very long and slow answer that keeps going." for n in range(1, 41)
)


async def test_user_speech_interrupts_the_answer_and_truncates_history(orchestrator, claude, utterance):
    claude.reply = LONG_REPLY
    claude.token_delay_s = 0.04  # ~600 tokens: about 24 s if nobody interrupts
    aborted_before = len(claude.requests), claude.aborted
    async with AgentStream(orchestrator.ws_url) as agent:
        await agent.start()
        await agent.send_text("tell me a long story")

        def enough_audio(_f, t) -> bool:  # ~1.5 s of the answer sent at 24 kHz s16le
            return sum(len(f.payload) for f in t.of(FrameType.TTS_AUDIO)) > 24000 * 2 * 1.5

        t = await collect(agent, enough_audio, timeout=30)
        assert not t.of(FrameType.DONE)
        await asyncio.sleep(1.0)  # the user hears a little of it first (history keeps what was played)
        claude.reply = "Sure, go ahead."
        claude.token_delay_s = 0.01
        await agent.stream_audio(utterance)  # the user talks over the agent
        t = await collect(agent, lambda f, t: f.type == FrameType.DONE and not f.json()["interrupted"], 60, t)

    kinds = [f.type for f in t.frames]
    clear_at = kinds.index(FrameType.CLEAR)
    interrupted = [
        i for i, f in enumerate(t.frames) if f.type == FrameType.EVENT and f.json()["event"] == "interrupted"
    ]
    assert interrupted and interrupted[0] > clear_at
    cut_done = next(i for i, f in enumerate(t.frames) if f.type == FrameType.DONE)
    assert t.frames[cut_done].json()["interrupted"] is True and cut_done > clear_at
    next_answer = next(i for i in range(cut_done, len(t.frames)) if t.frames[i].type == FrameType.LLM_CHUNK)
    assert FrameType.TTS_AUDIO not in kinds[clear_at:next_answer], "audio after clear from the cut answer"

    speech_start = next(
        i for i, f in enumerate(t.frames) if f.type == FrameType.EVENT and f.json()["event"] == "speech_start"
    )
    assert speech_start < clear_at

    # the Claude stream was cancelled (the fake saw the client hang up mid-stream)
    await eventually(lambda: claude.aborted > aborted_before[1], 10)

    # the next request carries only the part of the answer that was sent before the cut
    second = claude.requests[-1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    heard = second[1]["content"]
    assert heard and LONG_REPLY.startswith(heard) and len(heard) < len(LONG_REPLY) / 2
    streamed = "".join(f.text() for f in t.frames[:clear_at] if f.type == FrameType.LLM_CHUNK)
    assert len(heard) <= len(streamed), "history holds no text that was never even generated"


TAIL_REPLY = "Okay. " + " ".join(f"Here is point number {n}, which takes a while to say out loud." for n in range(1, 8))


async def test_speech_after_done_still_barges_in_while_the_answer_plays(orchestrator, claude, utterance):
    claude.reply = TAIL_REPLY  # streams fast: all text and audio is sent long before it has played
    async with AgentStream(orchestrator.ws_url) as agent:
        ready = await agent.start()
        await agent.send_text("what are your points?")
        t = await collect(agent, is_done, timeout=30)
        answer_chars = sum(len(f.text()) for f in t.of(FrameType.LLM_CHUNK))
        assert answer_chars == len(TAIL_REPLY) and t.of(FrameType.DONE)[0].json()["interrupted"] is False
        assert t.playback_end(ready["sample_rate"]) - time.monotonic() > 5, "audio still plays after done"
        first_done = len(t.frames)

        await asyncio.sleep(1.0)  # "Okay." has played
        claude.reply = "Sure, go ahead."
        await agent.stream_audio(utterance)  # the user talks over the answer's queued tail
        t = await collect(agent, is_done, timeout=60, into=t)

    after = t.frames[first_done:]
    kinds = [f.type for f in after]
    assert FrameType.CLEAR in kinds, "the tail still playing in the client is cleared"
    clear_at = kinds.index(FrameType.CLEAR)
    events = [(i, f.json()) for i, f in enumerate(after) if f.type == FrameType.EVENT]
    speech_start = next(i for i, e in events if e["event"] == "speech_start")
    interrupted = [(i, e) for i, e in events if e["event"] == "interrupted"]
    assert len(interrupted) == 1 and speech_start < clear_at < interrupted[0][0]
    event = interrupted[0][1]
    assert (event["reason"], event["turn"], event["after_done"]) == ("speech_start", 1, True)
    dones = [f.json() for f in after if f.type == FrameType.DONE]
    assert [(d["turn"], d["interrupted"]) for d in dones] == [(2, False)], "no second done for the cut turn"

    # the next request carries only what was played before the cut: "Okay." and maybe a few words
    messages = claude.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    heard = messages[1]["content"]
    assert heard.startswith("Okay.") and TAIL_REPLY.startswith(heard), heard
    assert len(heard) < len(TAIL_REPLY) / 2 and event["heard_chars"] == len(heard)
