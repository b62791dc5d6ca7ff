"""`voice speak` against a real piper TTS: the WAV it writes has exact header sizes (streamed or
not), it shows progress on stderr while it waits, and gives up with a clear message when the
server sends nothing for --timeout seconds (here: the one synthesis slot is held by a client
that stopped reading)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import wave

import pytest
import websockets

from services.common.config import MODELS_DIR
from tests.cli.conftest import run_voice
from tests.helpers.procs import ServiceProcess

# one piece (no sentence end) of ~4000 characters: minutes of audio, far more than socket buffers hold
HOG_TEXT = ", ".join(["the long road winds on past the quiet fields and over the hill"] * 60)


@pytest.fixture(scope="module")
def piper_tts(tmp_path_factory, models_dir):
    env = {
        "TTS_ENGINE": "piper",
        "TTS_PIPER_VOICES_DIR": str(MODELS_DIR / "piper"),
        "TTS_MAX_CONCURRENT": "1",
        "TTS_PIECE_MAX_CHARS": "4096",
        "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("voices")),
        "REDIS_URL": "",
    }
    with ServiceProcess("tts", env=env, label="cli-piper-tts") as service:
        yield service


def header_sizes(path) -> tuple[int, int, int]:
    """(RIFF size, data size, file size) read straight from the bytes."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    pos = 12
    while data[pos : pos + 4] != b"data":
        pos += 8 + int.from_bytes(data[pos + 4 : pos + 8], "little")
    return int.from_bytes(data[4:8], "little"), int.from_bytes(data[pos + 4 : pos + 8], "little"), len(data) - pos - 8


def sox_seconds(path) -> float:
    return float(subprocess.run(["sox", "--i", "-D", str(path)], capture_output=True, text=True, check=True).stdout)


@pytest.mark.parametrize("transport", ["stream", "rest"])
def test_speak_writes_a_wav_with_true_sizes(piper_tts, tmp_path, transport):
    out = tmp_path / f"{transport}.wav"
    url = piper_tts.ws_url if transport == "stream" else piper_tts.url
    extra = ["--rest"] if transport == "rest" else ["--json"]
    result = run_voice("speak", "Hello there. This is a test of the command line.", "-o", str(out), "--url", url,
                       *extra, key=None)  # fmt: skip
    assert result.returncode == 0, result.stderr
    riff, data, after_header = header_sizes(out)
    assert data == after_header and riff == out.stat().st_size - 8  # no 0xFFFFFFFF placeholders left
    with wave.open(str(out)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 1.0 < seconds < 10.0 and sox_seconds(out) == pytest.approx(seconds, abs=0.01)
    if transport == "rest":
        assert "wrote" in result.stderr
    else:
        summary = json.loads(result.stdout.splitlines()[-1])
        assert summary["engine"] == "piper" and summary["model"].startswith("piper:")
        assert "piper" in result.stderr and ("chunk" in result.stderr or "waiting" in result.stderr)


async def test_speak_gives_up_with_a_clear_message_when_nothing_comes(piper_tts, tmp_path):
    hog = await websockets.connect(piper_tts.ws_url + "/v1/tts/stream", max_size=None, max_queue=1)
    try:
        assert json.loads(await hog.recv())["type"] == "ready"
        await hog.send(json.dumps({"type": "config", "sample_rate": 48000}))
        await hog.send(json.dumps({"type": "synthesize", "request_id": "hog", "text": HOG_TEXT}))
        while not (isinstance(message := await hog.recv(), str) and json.loads(message)["type"] == "audio_chunk"):
            pass
        # the hog now holds the only slot and reads no more: its piece cannot finish
        for transport in ("stream", "rest"):
            url = piper_tts.ws_url if transport == "stream" else piper_tts.url
            args = ["speak", "Hello.", "-o", str(tmp_path / "x.wav"), "--url", url, "--timeout", "2"]
            result = await asyncio.to_thread(run_voice, *args, *(["--rest"] if transport == "rest" else []), key=None)
            assert result.returncode == 1, (transport, result.stderr)
            assert "no audio from" in result.stderr and "--timeout" in result.stderr, result.stderr
            assert "waiting" in result.stderr and "Traceback" not in result.stderr
    finally:
        hog.transport.abort()
