"""Hostile JSON on /twilio/media (issue 9 items 3 and 4). Twilio's protocol has no error message,
so its error shape is a counted, logged skip: a 20 KB message of 10 000 nested brackets and a
message with a lone surrogate are skipped, the call goes on (keypad digits still reach Claude) and
a `stop` still gets the bridge's own close. Before the shared guarded parser, the deep message
dropped the socket without a close frame.

Only the orchestrator and a fake Claude run here: ASR and TTS are left unreachable on purpose (the
agent answers in text), which keeps this module light and shows the bridge does not need them to
survive bad input."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.helpers.fake_claude import FakeClaude
from tests.helpers.fake_twilio import FakeCall
from tests.helpers.procs import ServiceProcess, free_port

AUTH_TOKEN = "twilio-bad-json-token-0123456789"
DEEP = "[" * 10_000 + "]" * 10_000


@pytest.fixture(scope="module")
def bridge():
    with FakeClaude(reply="Got it.", ttft_s=0.01, token_delay_s=0.0) as claude:
        dead = f"ws://127.0.0.1:{free_port()}"
        env = {
            "ASR_URL": dead,
            "TTS_URL": dead,
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": claude.url,
            "LLM_MAX_RETRIES": "0",
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_DTMF_GAP_S": "0.3",
        }
        proc = ServiceProcess("orchestrator", env, label="twilio-bad-json").start(wait="/health")
        try:
            yield proc, claude
        finally:
            proc.stop()


def bad_messages(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(r"^voice_orchestrator_twilio_bad_messages_total ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def eventually(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def test_deep_json_and_lone_surrogates_are_skipped_and_the_call_goes_on(bridge):
    proc, claude = bridge
    before_bad = bad_messages(proc.url)
    before_asked = len(claude.requests)
    call = FakeCall(f"{proc.ws_url}/twilio/media", AUTH_TOKEN, custom_parameters={"mode": "agent"})
    await call.open()
    try:
        await call.send_raw(DEEP)
        await call.send_raw('{"event": "dtmf", "dtmf": {"digit": "\\ud800"}}')
        await call.send_raw('{"event": "media", "media": {"payload": "\\udfff"}}')
        await eventually(lambda: bad_messages(proc.url) >= before_bad + 3, 10, "the three skips counted")
        assert not call.closed.is_set(), "the bridge dropped the call on bad input"

        for digit in "42#":  # the same call still works: keyed digits become a turn for Claude
            await call.dtmf(digit)
        await eventually(lambda: len(claude.requests) > before_asked, 20, "digits reached Claude")
        users = [m["content"] for m in claude.requests[before_asked]["messages"] if m["role"] == "user"]
        assert users[-1] == "Keypad: 4 2"
    finally:
        await call.stop()
    assert call.closed_by_server and call.close_code == 1000, (call.close_code, call.close_reason)
    assert "Traceback" not in proc.log_tail(400)
