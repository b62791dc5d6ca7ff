"""Fixtures for the CLI tests: the whole stack on loopback, input audio files, and a runner for the
installed `voice` console script as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common.audio import wav_bytes
from tests.helpers.fake_claude import FakeClaude
from tests.helpers.procs import REPO
from tests.helpers.speech import concat, silence, speak
from tests.helpers.stack import Stack, agent_stack

VOICE = Path(sys.executable).parent / "voice"  # the console script pyproject installs
API_KEY = "cli-test-key"  # every service of the CLI stack requires it


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_voice(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, key: str | None = API_KEY
) -> Result:
    """Runs `voice ARGS…`; the API key goes in through VOICE_API_KEY unless `key` is None."""
    command = [str(VOICE)] if VOICE.exists() else [sys.executable, "-m", "clients.voice.cli"]
    clean = {
        k: v for k, v in os.environ.items() if k not in ("ASR_URL", "TTS_URL", "ORCHESTRATOR_URL", "VOICE_API_KEY")
    }
    if key is not None:
        clean["VOICE_API_KEY"] = key
    t0 = time.monotonic()
    proc = subprocess.run(
        [*command, *args], cwd=REPO, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


@pytest.fixture(scope="module")
def stack(models_dir, espeak) -> Stack:
    with agent_stack("cli", FakeClaude(reply="Sure. It is sunny today."), api_key=API_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory, espeak) -> Path:
    """A spoken question between silences, 16 kHz mono WAV."""
    path = tmp_path_factory.mktemp("cli") / "question.wav"
    path.write_bytes(wav_bytes(concat(silence(0.3), speak("What is the weather like today?"), silence(1.0)), 16000))
    return path
