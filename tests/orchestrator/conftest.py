"""The whole chain on loopback: real ASR (Whisper tiny.en, real Smart Turn + Silero), real TTS
(espeak engine), the orchestrator, and a fake Claude that speaks the Messages SSE protocol to the
real anthropic SDK. Started once per test session; tests that break a service restore it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from clients.voice import AgentStream, StreamClosed
from services.common.protocol.agent import Frame, FrameType
from tests.helpers.fake_claude import FakeClaude
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence, speak

# ASR and TTS require a key, as deployed behind a gateway: every chain test also shows that the
# orchestrator sends UPSTREAM_API_KEY (test_upstream_key.py checks the refusals)
UPSTREAM_KEY = "upstream-test-key"
ASR_ENV = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "1", "IDLE_TIMEOUT_S": "120", "API_KEYS": UPSTREAM_KEY}
TTS_ENV = {"TTS_ENGINE": "espeak", "IDLE_TIMEOUT_S": "120", "API_KEYS": UPSTREAM_KEY}


def orchestrator_env(asr_url: str, tts_url: str, claude: FakeClaude) -> dict[str, str]:
    return {
        "ASR_URL": asr_url,
        "TTS_URL": tts_url,
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": claude.url,
        "LLM_MAX_RETRIES": "0",
        "LLM_MODEL": "claude-test",
        "UPSTREAM_RETRY_MAX_S": "0.5",
        "UPSTREAM_API_KEY": UPSTREAM_KEY,
    }


@pytest.fixture(scope="session")
def claude():
    with FakeClaude(ttft_s=0.1, token_delay_s=0.01) as server:
        yield server


@pytest.fixture(autouse=True)
def reset_claude(claude):
    """Each test starts from the default fake Claude behaviour."""
    claude.reply = "Hello! This is a test answer. It has three sentences."
    claude.ttft_s, claude.token_delay_s, claude.mode = 0.1, 0.01, "ok"
    yield


@pytest.fixture(scope="session")
def asr_service(models_dir):
    proc = ServiceProcess("asr", ASR_ENV, label="orch-asr").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def tts_service(espeak):
    proc = ServiceProcess("tts", TTS_ENV, label="orch-tts").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def orchestrator(asr_service, tts_service, claude):
    env = orchestrator_env(asr_service.ws_url, tts_service.ws_url, claude)
    proc = ServiceProcess("orchestrator", env, label="orch-main").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def utterance() -> np.ndarray:
    """A short spoken question, then more silence than the ASR's max_silence_secs (3 s): the turn
    ends even when Smart Turn judges it incomplete (the ASR's clock is the audio we send)."""
    return concat(silence(0.3), speak("Hello, what is the weather like today?"), silence(3.5))


@dataclass
class Transcript:
    frames: list[Frame] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # time.monotonic() per frame

    def playback_end(self, sample_rate: int) -> float:
        """When a client that plays tts_audio back to back from its arrival finishes (monotonic
        clock). The server's playback clock starts at sending, so its estimate ends no later."""
        end = 0.0
        for frame, at in zip(self.frames, self.received_at, strict=True):
            if frame.type == FrameType.CLEAR:
                end = at
            elif frame.type == FrameType.TTS_AUDIO:
                end = max(at, end) + len(frame.payload) / 2 / sample_rate
        return end

    def of(self, kind: FrameType) -> list[Frame]:
        return [f for f in self.frames if f.type == kind]

    def events(self, name: str | None = None) -> list[dict]:
        out = [f.json() for f in self.of(FrameType.EVENT)]
        return [e for e in out if name is None or e.get("event") == name]

    def errors(self) -> list[dict]:
        return [f.json() for f in self.of(FrameType.ERROR)]

    def index(self, kind: FrameType) -> int:
        return next(i for i, f in enumerate(self.frames) if f.type == kind)


async def collect(
    agent: AgentStream,
    until: Callable[[Frame, Transcript], bool],
    timeout: float = 30.0,
    into: Transcript | None = None,
) -> Transcript:
    """Reads frames until `until(frame, transcript)` is true (the frame is included)."""
    transcript = into or Transcript()
    async with asyncio.timeout(timeout):
        while True:
            try:
                frame = await agent.recv()
            except StreamClosed:
                return transcript
            transcript.frames.append(frame)
            transcript.received_at.append(time.monotonic())
            if until(frame, transcript):
                return transcript


async def until_played(transcript: Transcript, sample_rate: int) -> None:
    """Waits until the agent's audio in `transcript` has played out, by the server's clock too."""
    await asyncio.sleep(max(0.0, transcript.playback_end(sample_rate) - time.monotonic()) + 0.1)


def is_done(frame: Frame, _t: Transcript) -> bool:
    return frame.type == FrameType.DONE


def gauge(url: str, name: str) -> float:
    """A metric's value; sends the upstream key (ASR and TTS require it, others ignore it)."""
    text = httpx.get(url + "/metrics", timeout=5, headers={"Authorization": f"Bearer {UPSTREAM_KEY}"}).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} not in {url}/metrics"
    return float(match.group(1))


async def eventually(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> None:
    """Polls `predicate` until true; fails the test after `timeout` seconds."""
    for _ in range(int(timeout / step) + 1):
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


async def http_get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url)
