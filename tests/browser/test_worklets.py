"""The page's two AudioWorklets in real Chromium, rendered sample-exact through OfflineAudioContext
(no devices, faster than real time): the capture resampler keeps frequency, level and frame size;
the playback ring buffer plays gap-free and a clear empties it within one render quantum."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.cdp import Chromium
from tests.helpers.procs import ARTIFACTS, REPO, free_port

PROBES = (Path(__file__).parent / "worklet_probes.js").read_text()


@pytest.fixture(scope="module")
def web_server():
    """The page's files from a plain static server: the worklets need no backend."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", "clients/web"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
async def chrome(web_server, tmp_path_factory):
    browser = Chromium(tmp_path_factory.mktemp("worklets"), log_path=ARTIFACTS / "browser-worklets.log")
    await browser.start()
    await browser.navigate(web_server + "/index.html")  # same origin as the worklet modules
    await browser.wait_for("document.readyState === 'complete'", 10)
    await browser.evaluate(PROBES)
    yield browser
    await browser.close()


async def probe(chrome: Chromium, call: str) -> dict:
    return await chrome.evaluate(f"({call})", await_promise=True)


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
async def test_capture_resamples_to_16k_frames(chrome, rate):
    r = await probe(chrome, f"probeCapture({rate})")
    assert r["sizes"] == [320]  # 20 ms at 16 kHz, every frame
    assert 15680 <= r["samples"] <= 16000  # one second in, one second out (the last partial frame waits)
    assert abs(r["crossings"] / (r["samples"] / 16000) - 880) < 10  # 440 Hz stays 440 Hz
    assert 0.47 < r["peak"] <= 0.5 + 1e-3  # level kept, no clipping


async def test_playback_clear_empties_the_ring_at_once(chrome):
    r = await probe(chrome, "probePlaybackClear()")
    assert r["queued"] == 24000
    before, after = r["atClear"]["before"], r["atClear"]["after"]
    assert before["buffered"] > 0 and before["playing"]
    assert after["buffered"] == 0 and after["lastCleared"] == before["buffered"] and after["clears"] == 1
    assert r["afterMax"] == 0  # silence from the first quantum after the clear
    # until the clear: the sine played continuously at its own pitch and level
    assert r["first"] <= 128 and r["longestQuiet"] <= 2
    assert abs(r["crossings"] / r["seconds"] - 600) < 6
    assert abs(r["rms"] - 16000 / 32768 / 2**0.5) < 0.01


async def test_playback_is_gap_free_when_audio_arrives_in_real_time(chrome):
    r = await probe(chrome, "probePlaybackStreaming()")
    stats = r["stats"]
    assert stats["samplesPlayed"] == 480 * 40 and stats["buffered"] == 0 and stats["dropped"] == 0
    assert stats["drained"] == 1  # ran dry once: at the very end, never in between
    assert r["longestQuiet"] <= 2
    assert abs(r["seconds"] - 0.8) < 0.01  # 0.8 s in, 0.8 s out
    assert abs(r["crossings"] / r["seconds"] - 600) < 6
