"""One voice stack for the Twilio tests: ASR (Whisper tiny.en, real Smart Turn + Silero), TTS
(espeak), a fake Claude, and the orchestrator with the bridge and a Twilio auth token set."""

from __future__ import annotations

import pytest

from tests.helpers.fake_claude import FakeClaude
from tests.helpers.stack import agent_stack

AUTH_TOKEN = "twilio-test-auth-token-0123456789"
DEFAULT_REPLY = "Hello caller. This is the answer."


@pytest.fixture(scope="module")
def stack(models_dir, espeak):
    claude = FakeClaude(reply=DEFAULT_REPLY, ttft_s=0.05, token_delay_s=0.01)
    env = {
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_DTMF_GAP_S": "0.5",
        "LLM_MAX_RETRIES": "0",
        "IDLE_TIMEOUT_S": "120",
    }
    with agent_stack("twilio", claude, orchestrator_env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def reset_claude(stack):
    stack.claude.reply = DEFAULT_REPLY
    stack.claude.mode = "ok"
    yield
