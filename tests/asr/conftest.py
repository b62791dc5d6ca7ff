from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from services.asr import config as asr_config
from services.asr.engines import Engines
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence, speak, trimmed

# the default model (Whisper tiny.en, real weights), greedy with one temperature as in the benchmark:
# one decode per turn, the same words every run
FAST_ENV = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "2", "LOG_LEVEL": "INFO"}

COMPLETE = "How are you doing today?"
COMPLETE_2 = "What time does the train leave tomorrow?"
INCOMPLETE = "I was going to say that"


def said(text: str) -> np.ndarray:
    """espeak speech without the ~0.35 s of silence espeak appends, so a test's pauses are exact."""
    return trimmed(speak(text))


@pytest.fixture(scope="session")
def asr(models_dir, espeak):
    """The ASR service as users run it (`python -m services.asr`), shared by the ASR tests."""
    service = ServiceProcess("asr", env=FAST_ENV, label="asr-main").start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def two_sentences(espeak):
    """Two sentences separated by 1.5 s of silence, with silence around them (16 kHz float32)."""
    return concat(silence(0.4), speak(COMPLETE), silence(1.5), speak(COMPLETE_2), silence(1.2))


@pytest.fixture(scope="module")
async def engines(models_dir, espeak):
    """The process-wide ASR engines (tiny.en, Smart Turn, Silero) loaded in-process, for tests that
    drive the transport-free core directly; one load per module."""
    config = asr_config.load({**os.environ, **FAST_ENV})
    loaded = Engines(config)
    await asyncio.to_thread(loaded.load)
    loaded.transcriber.start()
    yield loaded
    await loaded.transcriber.stop()
    loaded.shutdown()
