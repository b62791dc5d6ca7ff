"""The browser client in real headless Chromium against the real stack: the page captures the fake
microphone through its AudioWorklet, streams it over /v1/agent/stream, and plays the agent's answer
through its playback worklet. Assertions read `window.voiceState` and the DOM, never pixels; words
through a WER threshold."""

from __future__ import annotations

import asyncio
import json

from services.common.protocol.agent import WATERFALL_STAGES
from tests.browser.conftest import API_KEY, MAX_WER, QUESTION
from tests.helpers.procs import ARTIFACTS
from tests.helpers.wer import wer

SHORT_REPLY = "Sure. It is sunny and warm today. Enjoy it."
# 12 sentences of 8 words: TTS makes audio faster than it plays, so once the answer starts there is
# always audio waiting in the page's buffer until the user interrupts
LONG_REPLY = " ".join(f"This is sentence number {n} of a very long story." for n in range(1, 13))

STATE = "window.voiceState"


async def open_page(chrome, stack, key: str = API_KEY, query: str = "") -> None:
    await chrome.navigate(f"{stack.orchestrator.url}/?autostart=1&api_key={key}{query}")
    await chrome.wait_for(f"{STATE} && {STATE}.sessionReady", 20)


async def state(chrome) -> dict:
    return json.loads(await chrome.evaluate(f"JSON.stringify({STATE})"))


async def test_page_talks_with_the_agent(stack, browser, one_question):
    stack.claude.reply, stack.claude.token_delay_s = SHORT_REPLY, 0.01
    requests_before = len(stack.claude.requests)
    chrome = await browser(one_question)
    await open_page(chrome, stack)

    ready = await chrome.evaluate(f"{STATE}.ready")
    assert ready["mode"] == "agent" and ready["sample_rate"] >= 8000
    assert await chrome.evaluate(f"{STATE}.outputRate") == ready["sample_rate"]
    models = await chrome.evaluate("document.getElementById('models').textContent")
    assert f"ASR: {ready['asr_model']}" in models and f"TTS: {ready['tts_model']}" in models, models

    await chrome.wait_for(f"{STATE}.waterfalls.length >= 1", 60)
    # every sample the server sent is played out, then the ring buffer is empty
    all_played = f"{STATE}.samplesPlayed > 0 && {STATE}.samplesPlayed * 2 === {STATE}.audioBytesReceived"
    await chrome.wait_for(f"{STATE}.buffered === 0 && {all_played}", 30)
    shot = await chrome.screenshot(ARTIFACTS / "browser.png")
    s = await state(chrome)

    # microphone → 16 kHz frames → server
    assert s["micFrames"] > 0 and s["framesSent"] > 0
    assert s["contextRate"] >= 8000
    # transcript: a final arrived and is shown as the user's line, with the words spoken into the
    # fake microphone (48 kHz WAV → capture worklet → 16 kHz → ASR with Whisper tiny.en)
    assert len(s["transcripts"]) >= 1
    user_lines = await chrome.evaluate(
        "[...document.querySelectorAll('#conversation li.user .text')].map(e => e.textContent)"
    )
    assert len(user_lines) == len(s["transcripts"])
    shown = " ".join(user_lines)
    print(f"\n[wer] browser page shows {shown!r} for {QUESTION!r}: {wer(QUESTION, shown):.2%}")
    assert wer(QUESTION, shown) <= MAX_WER, (QUESTION, shown)
    # the chain reached Claude with that final as the user's message
    request = stack.claude.requests[requests_before]
    assert request["messages"][-1]["role"] == "user"
    assert request["messages"][-1]["content"] in {t["text"].strip() for t in s["transcripts"]}
    # the agent's text streamed in and is shown as the agent's line
    assert s["agentText"].strip() == SHORT_REPLY
    agent_line = await chrome.evaluate("document.querySelector('#conversation li.agent .text').textContent")
    assert agent_line.strip() == SHORT_REPLY
    # audio: received, played by the worklet gap-free from the ring buffer, nothing dropped or cleared
    assert s["audioFramesReceived"] > 0 and s["framesPlayed"] > 0
    assert s["clearsReceived"] == 0 and s["localClears"] == 0
    assert not s["errors"], s["errors"]
    # the waterfall: every stage present, in order, and drawn as one bar per stage
    done = s["waterfalls"][0]
    assert done["interrupted"] is False
    stages = done["stages_ms"]
    assert all(stages[name] is not None for name in WATERFALL_STAGES), stages
    times = [stages[name] for name in WATERFALL_STAGES]
    assert times[0] == 0 and times == sorted(times)
    bars = await chrome.evaluate(
        "[...document.querySelectorAll('#latency .waterfall .bar')].map(b => [b.dataset.stage, +b.dataset.ms,"
        " b.getBoundingClientRect().width])"
    )
    assert [b[0] for b in bars] == list(WATERFALL_STAGES)
    assert all(abs(b[1] - t) <= 0.5 for b, t in zip(bars, times, strict=True)), (bars, times)
    assert any(b[2] > 0 for b in bars), "the bars were not laid out"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


async def test_direct_mode_speaks_the_words_back(stack, browser, one_question):
    requests_before = len(stack.claude.requests)
    chrome = await browser(one_question)
    await open_page(chrome, stack, query="&mode=direct")
    assert (await chrome.evaluate(f"{STATE}.ready"))["mode"] == "direct"
    assert await chrome.evaluate("document.getElementById('mode').value") == "direct"
    await chrome.wait_for(f"{STATE}.waterfalls.length >= 1 && {STATE}.samplesPlayed > 0", 60)
    s = await state(chrome)
    assert s["transcripts"] and s["agentText"] == "" and s["audioFramesReceived"] > 0
    assert len(stack.claude.requests) == requests_before  # no LLM in direct mode
    # no llm_first_token stage: the waterfall draws the five that happened, in order
    stages = s["waterfalls"][0]["stages_ms"]
    assert stages["llm_first_token"] is None
    drawn = await chrome.evaluate(
        "[...document.querySelectorAll('#latency .waterfall .bar')].map(b => b.dataset.stage)"
    )
    assert drawn == [name for name in WATERFALL_STAGES if stages[name] is not None] and len(drawn) == 5


async def test_barge_in_clears_playback_at_once(stack, browser, question_then_interruption):
    stack.claude.reply, stack.claude.token_delay_s = LONG_REPLY, 0.15
    chrome = await browser(question_then_interruption)
    await open_page(chrome, stack)

    # the answer starts playing before the user talks over it
    await chrome.wait_for(f"{STATE}.samplesPlayed > 0", 40)
    await chrome.wait_for(f"{STATE}.lastClear !== null", 40)
    s = await state(chrome)
    names = [e.get("event") for e in s["events"]]
    assert "speech_start" in names and "interrupted" in names
    assert s["clearsReceived"] >= 1
    clear = s["lastClear"]
    # the 0x0B emptied the worklet's ring buffer: audio was waiting, none is left
    assert clear["cleared"] > 0, clear
    assert clear["bufferedAfter"] == 0, clear
    # nothing is played that was not received; what was cleared was never played
    assert s["samplesPlayed"] + clear["cleared"] <= s["audioBytesReceived"] // 2
    # the cut turn still gets its waterfall, flagged as interrupted, and the page shows both
    await chrome.wait_for(f"{STATE}.waterfalls.some(w => w.interrupted)", 10)
    assert await chrome.evaluate("document.querySelectorAll('#conversation li.agent.interrupted').length") >= 1
    assert await chrome.evaluate(
        "[...document.querySelectorAll('.waterfall .title')].some(t => /interrupted/.test(t.textContent))"
    )


async def test_page_reconnects_after_the_server_restarts(stack, browser, one_question):
    chrome = await browser(one_question)
    await open_page(chrome, stack)
    assert await chrome.evaluate(f"{STATE}.connects") == 1

    await asyncio.to_thread(stack.orchestrator.stop)
    await chrome.wait_for(f"!{STATE}.connected && {STATE}.status === 'reconnecting'", 15)
    await asyncio.to_thread(stack.orchestrator.start)
    await chrome.wait_for(f"{STATE}.sessionReady && {STATE}.reconnects >= 1", 30)
    s = await state(chrome)
    assert s["connects"] >= 2 and s["closes"], s["closes"]
    assert s["status"] == "connected"


async def test_wrong_api_key_is_reported_and_not_retried(stack, browser, one_question):
    chrome = await browser(one_question)
    await chrome.navigate(f"{stack.orchestrator.url}/?autostart=1&api_key=wrong-key")
    await chrome.wait_for(f"{STATE} && {STATE}.status === 'error'", 15)
    await asyncio.sleep(1.5)  # longer than the first reconnect delay
    s = await state(chrome)
    assert [c["code"] for c in s["closes"]] == [1008]
    assert not s["sessionReady"] and s["framesSent"] == 0
    pill = await chrome.evaluate("document.getElementById('status').textContent")
    assert pill.startswith("error") and (s["closes"][0]["reason"] or "unauthorized") in pill
