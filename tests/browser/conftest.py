"""Fixtures for the headless Chromium tests: the whole agent stack on loopback, WAV files that
Chromium plays as its fake microphone, and a browser factory that keeps console logs as artifacts."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from services.common.audio import wav_bytes
from tests.browser.cdp import CHROMIUM, Chromium
from tests.helpers import corpus
from tests.helpers.fake_claude import FakeClaude
from tests.helpers.procs import ARTIFACTS
from tests.helpers.speech import concat, silence, speak, speak_piper, trimmed
from tests.helpers.stack import Stack, agent_stack

MIC_RATE = 48000  # what a real microphone delivers; the capture worklet resamples to 16 kHz
API_KEY = "browser-test-key"  # every service requires it; the page passes ?api_key= to its WebSocket


@pytest.fixture(scope="module")
def stack(models_dir, espeak) -> Stack:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium missing: `make install` installs the Debian package")
    with agent_stack("browser", FakeClaude(), api_key=API_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def wav_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mic")


def write_mic_wav(directory: Path, name: str, *parts) -> Path:
    path = directory / f"{name}.wav"
    path.write_bytes(wav_bytes(concat(*parts), MIC_RATE))
    return path


# a sentence of the fixed speech set (tests/helpers/corpus.py), in the Piper voice: the page must
# show these words as the user's line
QUESTION = corpus.PIPER_SENTENCES[1]
# one word of the question's eight (12.5 %): one sentence cannot carry the set's 6 % limit, which
# tests/asr/test_wer.py holds on the whole Piper half; a CI run heard 'train' as 'rain' here once
MAX_WER = 0.125


@pytest.fixture(scope="module")
def one_question(wav_dir) -> Path:
    """One spoken question between silences: the fake microphone plays it once, then silence."""
    return write_mic_wav(
        wav_dir, "one_question", silence(1.0, MIC_RATE), trimmed(speak_piper(QUESTION, MIC_RATE)),
        silence(1.0, MIC_RATE),
    )  # fmt: skip


@pytest.fixture(scope="module")
def question_then_interruption(wav_dir) -> Path:
    """A question, a pause long enough for the (slow, long) answer to start playing, then the user
    talks over it."""
    return write_mic_wav(
        wav_dir, "interruption", silence(1.0, MIC_RATE), speak("Tell me a long story please.", MIC_RATE),
        silence(9.0, MIC_RATE), speak("Stop, that is enough.", MIC_RATE), silence(2.0, MIC_RATE),
    )  # fmt: skip


@pytest.fixture
async def browser(tmp_path, request) -> AsyncIterator[Callable]:
    """`await browser(wav)` → a started Chromium whose microphone plays `wav` once. Its console goes
    to tests/artifacts/browser-<test>.console.log and its own log next to it."""
    opened: list[Chromium] = []
    label = f"browser-{request.node.name}"

    async def launch(wav: Path) -> Chromium:
        chrome = Chromium(tmp_path / "profile", fake_audio=Path(f"{wav}%noloop"), log_path=ARTIFACTS / f"{label}.log")
        opened.append(chrome)
        return await chrome.start()

    yield launch
    for chrome in opened:
        (ARTIFACTS / f"{label}.console.log").write_text("\n".join(chrome.console) + "\n")
        await chrome.close()
    with contextlib.suppress(OSError):
        shutil.rmtree(tmp_path / "profile")
