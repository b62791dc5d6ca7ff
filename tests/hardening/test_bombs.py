"""Issue 9, item 2: decompression bombs. A small FLAC of hours of silence is refused while it
decodes (413, a JSON reason), in a worker thread, with the server's peak memory bounded and
/health answering meanwhile; float PCM with NaN / Inf and absurd rates or channel counts are
refused by the same decoder."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.common.audio import AudioFormatError, AudioTooLong, decode_file
from tests.hardening.audio_files import float_wav, int_wav, silent_flac
from tests.helpers.procs import ServiceProcess

BOMB_SECONDS = 2 * 3600  # 1.3 MB of FLAC; unbounded, ~0.5-1 GB of float32 at 16 kHz
PEAK_BOUND_MB = 150  # generous: the capped decode holds 60 s (4 MB); the bomb would take 460 MB+


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = silent_flac(BOMB_SECONDS)
    assert len(data) < 2 << 20
    return data


# ---------------------------------------------------------------- the decoder itself
def test_decoder_stops_at_the_cap_while_decoding(bomb):
    with pytest.raises(AudioTooLong) as info:
        decode_file(bomb, 16000, max_seconds=60)
    assert info.value.code == "audio_too_long"
    short = decode_file(silent_flac(3.0), 16000, max_seconds=60)  # under the cap: decoded whole
    assert abs(len(short) / 16000 - 3.0) < 0.7


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_decoder_refuses_non_finite_float_pcm(bad):
    samples = np.zeros(16000, dtype=np.float32)
    samples[1234] = bad
    with pytest.raises(AudioFormatError) as info:
        decode_file(float_wav(samples), 16000, max_seconds=60)
    assert info.value.code == "bad_audio" and "NaN" in info.value.message
    assert len(decode_file(float_wav(np.zeros(16000, dtype=np.float32)), 16000, max_seconds=60)) > 15000


def test_decoder_bounds_channels_and_sample_rate():
    with pytest.raises(AudioFormatError, match="channels"):
        decode_file(int_wav(0.5, 16000, channels=9), 16000, max_seconds=60)
    with pytest.raises(AudioFormatError, match="sample rate"):
        decode_file(int_wav(0.5, 400_000, channels=1), 16000, max_seconds=60)


# ---------------------------------------------------------------- the services
def rss_reset(pid: int) -> int:
    """Resets the process's peak RSS (VmHWM, via clear_refs) and returns its current RSS in kB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kb(pid, "VmRSS")


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def post_while_polling_health(service: ServiceProcess, path: str, **request) -> tuple[httpx.Response, list[int]]:
    """The request in a thread; /health polled from here until it is answered."""
    result: dict = {}

    def send() -> None:
        result["response"] = httpx.post(service.url + path, timeout=120, **request)

    sender = threading.Thread(target=send)
    sender.start()
    health: list[int] = []
    with httpx.Client(timeout=30) as client:
        while sender.is_alive() or not health:
            health.append(client.get(service.url + "/health").status_code)
    sender.join()
    return result["response"], health


@pytest.fixture(scope="module")
def asr(models_dir, espeak):
    env = {"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "1", "ASR_MAX_AUDIO_SECS": "60"}
    with ServiceProcess("asr", env=env, label="hardening-bombs-asr") as service:
        yield service


@pytest.fixture(scope="module")
def tts(espeak, tmp_path_factory):
    env = {"TTS_ENGINE": "espeak", "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("voices")), "REDIS_URL": ""}
    with ServiceProcess("tts", env={**env, "TTS_VOICE_MAX_S": "8"}, label="hardening-bombs-tts") as service:
        yield service


def test_asr_refuses_a_flac_bomb_with_413_and_bounded_memory(asr, bomb):
    pid = asr.proc.pid
    before_kb = rss_reset(pid)
    response, health = post_while_polling_health(
        asr, "/v1/audio/transcriptions", files={"file": ("bomb.flac", bomb)}, data={"model": "whisper-1"}
    )
    peak_kb = _status_kb(pid, "VmHWM")
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "audio_too_long"
    assert "ASR_MAX_AUDIO_SECS" in response.json()["error"]["message"]
    assert (peak_kb - before_kb) / 1024 < PEAK_BOUND_MB, f"peak RSS grew {(peak_kb - before_kb) / 1024:.0f} MB"
    assert health and set(health) == {200}
    # a NaN float WAV is a 400 with a code, and the service goes on
    nan = np.zeros(16000, dtype=np.float32)
    nan[10] = np.nan
    r = httpx.post(asr.url + "/v1/audio/transcriptions", files={"file": ("n.wav", float_wav(nan))}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_audio", r.text
    assert httpx.get(asr.url + "/ready", timeout=10).status_code == 200


def test_tts_voice_upload_refuses_a_flac_bomb_with_413_and_bounded_memory(tts, bomb):
    pid = tts.proc.pid
    before_kb = rss_reset(pid)
    response, health = post_while_polling_health(tts, "/v1/voices", files={"file": ("bomb.flac", bomb)})
    peak_kb = _status_kb(pid, "VmHWM")
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "reference_too_long"
    assert (peak_kb - before_kb) / 1024 < PEAK_BOUND_MB, f"peak RSS grew {(peak_kb - before_kb) / 1024:.0f} MB"
    assert health and set(health) == {200}
