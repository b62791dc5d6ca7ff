"""services.common.audio: encodings, G.711 μ-law, resampling, files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from services.common import audio as A


def tone(seconds: float = 0.5, rate: int = 16000, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("encoding", "tolerance"), [("pcm_f32le", 0.0), ("pcm_s16le", 2 / 32767), ("mulaw", 0.02)])
def test_round_trip(encoding, tolerance):
    x = tone()
    data = A.encode(x, encoding)
    assert len(data) == len(x) * A.BYTES_PER_SAMPLE[encoding]
    y = A.decode(data, encoding)
    assert y.dtype == np.float32 and len(y) == len(x)
    assert np.max(np.abs(y - x)) <= tolerance + 1e-7


def test_s16_clips_instead_of_wrapping():
    data = A.encode(np.array([2.0, -2.0], np.float32), "pcm_s16le")
    assert list(np.frombuffer(data, "<i2")) == [32767, -32767]


def test_mulaw_known_g711_values():
    # ITU-T G.711 μ-law: 0 → 0xFF, full scale positive → 0x80, full scale negative → 0x00
    assert A.mulaw_encode(np.array([0, 32767, -32768, -1], np.int16)) == bytes([0xFF, 0x80, 0x00, 0x7E])
    assert list(A.mulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00]))) == [0, 0, 32124, -32124]


def test_mulaw_matches_the_reference_codec():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    samples = np.arange(-32768, 32768, 7, dtype=np.int16)
    assert A.mulaw_encode(samples) == audioop.lin2ulaw(samples.astype("<i2").tobytes(), 2)
    every_byte = bytes(range(256))
    expected = np.frombuffer(audioop.ulaw2lin(every_byte, 2), "<i2")
    assert np.array_equal(A.mulaw_decode(every_byte), expected)


@pytest.mark.parametrize(("encoding", "size"), [("pcm_s16le", 3), ("pcm_f32le", 6), ("pcm_f32le", 1)])
def test_partial_samples_are_rejected(encoding, size):
    with pytest.raises(A.AudioFormatError) as info:
        A.decode(b"\x00" * size, encoding)
    assert info.value.code == "bad_frame" and str(size) in info.value.message


def test_nan_floats_and_unknown_encoding_are_rejected():
    with pytest.raises(A.AudioFormatError):
        A.decode(np.array([np.nan], "<f4").tobytes(), "pcm_f32le")
    with pytest.raises(A.AudioFormatError) as info:
        A.decode(b"\x00\x00", "flac")
    assert info.value.code == "bad_encoding"


@pytest.mark.parametrize("rate", [0, 7999, 48001, "16000", 16000.0, True])
def test_sample_rate_validation(rate):
    with pytest.raises(A.AudioFormatError):
        A.validate_sample_rate(rate)


def test_stream_resampler_matches_one_shot_and_has_no_seams():
    """Chunked streaming (odd chunk sizes) gives the same signal as resampling the whole clip."""
    x = tone(1.0, 44100)
    stream = A.StreamResampler(44100, 16000)
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        parts.append(stream.process(x[i : i + n]))
        i += n
    parts.append(stream.flush())
    y = np.concatenate(parts)
    assert abs(len(y) - 16000) <= 1
    whole = A.resample(x, 44100, 16000)
    n = min(len(y), len(whole))
    assert np.max(np.abs(y[100 : n - 100] - whole[100 : n - 100])) < 1e-3
    # continuity: no jump larger than the sine's own largest step
    max_step = 2 * np.pi * 440 / 16000 * 0.5
    assert np.max(np.abs(np.diff(y[100:-100]))) < max_step * 1.1


def test_same_rate_stream_is_identity():
    x = tone()
    assert np.array_equal(A.StreamResampler(16000, 16000).process(x), x)


def test_wav_and_decode_file_round_trip():
    x = tone(0.5, 24000)
    wav = A.wav_bytes(x, 24000)
    y = A.decode_file(wav, 16000)
    assert abs(len(y) - 8000) <= 2
    assert A.rms_dbfs(y) == pytest.approx(A.rms_dbfs(x), abs=0.5)
    with pytest.raises(A.AudioFormatError):
        A.decode_file(b"not audio" * 10)


def test_streaming_wav_header_is_readable():
    x = tone(0.25)
    data = A.wav_header(16000) + A.encode(x, "pcm_s16le")
    assert abs(len(A.decode_file(data, 16000)) - len(x)) <= 2
