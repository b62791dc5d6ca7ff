"""G.711 A-law (OpenAI Realtime `audio/pcma`): the ITU tables, round trips, and through `decode`."""

from __future__ import annotations

import numpy as np

from services.common.audio import alaw_decode, alaw_encode, decode, encode


def test_every_code_survives_decode_then_encode():
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes


def test_known_values_of_the_itu_table():
    # 0xD5 / 0x55: the smallest positive / negative step; 0xAA / 0x2A: full scale
    assert alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    assert alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == bytes([0xD5, 0x55, 0xAA, 0x2A])


def test_speech_band_round_trip_through_decode():
    t = np.arange(8000) / 8000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    back = decode(encode(tone, "alaw"), "alaw")
    assert back.shape == tone.shape
    snr = 10 * np.log10(np.sum(tone**2) / np.sum((tone - back) ** 2))
    assert snr > 30  # G.711 gives ~38 dB on a loud tone
