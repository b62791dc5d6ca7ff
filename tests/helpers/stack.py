"""The whole voice agent on loopback, as users run it: ASR (Whisper tiny.en, real Smart Turn and
Silero), TTS (espeak engine), and the orchestrator pointed at a FakeClaude. For tests that drive the
stack from outside (the browser page, the CLI) and need all three services at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from tests.helpers.fake_claude import FakeClaude
from tests.helpers.procs import ServiceProcess

# the default model (Whisper tiny.en), greedy with one temperature: one decode per turn
ASR_ENV = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "1", "LOG_LEVEL": "INFO"}
TTS_ENV = {"TTS_ENGINE": "espeak", "LOG_LEVEL": "INFO"}


@dataclass
class Stack:
    asr: ServiceProcess
    tts: ServiceProcess
    orchestrator: ServiceProcess
    claude: FakeClaude


@contextlib.contextmanager
def agent_stack(
    label: str,
    claude: FakeClaude | None = None,
    orchestrator_env: dict | None = None,
    api_key: str | None = None,
    asr_env: dict | None = None,
    tts_env: dict | None = None,
) -> Iterator[Stack]:
    """Starts the three services (logs in tests/artifacts/<label>-<service>.log), stops them after.
    With `api_key`, every service requires it (API_KEYS) and the orchestrator sends it upstream.
    `asr_env` / `tts_env` / `orchestrator_env` add to or override the defaults (the benchmark uses them)."""
    claude = claude or FakeClaude()
    auth = {"API_KEYS": api_key} if api_key else {}
    started: list[ServiceProcess] = []
    claude.start()
    try:
        asr = ServiceProcess("asr", env={**ASR_ENV, **(asr_env or {}), **auth}, label=f"{label}-asr")
        tts = ServiceProcess("tts", env={**TTS_ENV, **(tts_env or {}), **auth}, label=f"{label}-tts")
        for service in (asr, tts):
            service.start(wait="")  # both load at once; readiness is awaited below
            started.append(service)
        for service in (asr, tts):
            service.wait_for("/ready", 180.0)
        orch_env = {
            "ASR_URL": asr.ws_url,
            "TTS_URL": tts.ws_url,
            "ANTHROPIC_API_KEY": "test-key",
            "ANTHROPIC_BASE_URL": claude.url,
            "LOG_LEVEL": "INFO",
            **auth,
            **({"UPSTREAM_API_KEY": api_key} if api_key else {}),
            **(orchestrator_env or {}),
        }
        orchestrator = ServiceProcess("orchestrator", env=orch_env, label=f"{label}-orchestrator")
        started.append(orchestrator.start())
        yield Stack(asr, tts, orchestrator, claude)
    finally:
        for service in reversed(started):
            service.stop()
        claude.stop()
