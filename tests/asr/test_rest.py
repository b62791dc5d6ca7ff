"""POST /v1/audio/transcriptions with the official openai SDK (and raw httpx for the bad cases)."""

from __future__ import annotations

import httpx
import openai
import pytest

from services.common.audio import wav_bytes
from tests.asr.conftest import COMPLETE, COMPLETE_2, said
from tests.helpers.speech import concat, silence
from tests.helpers.wer import wer

EPS = 1e-3


@pytest.fixture(scope="module")
def speech_wav():
    audio = concat(silence(0.3), said(COMPLETE), silence(0.6), said(COMPLETE_2), silence(0.3))
    return wav_bytes(audio, 16000), len(audio) / 16000


@pytest.fixture(scope="module")
def client(asr):
    return openai.OpenAI(base_url=asr.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_json(client, speech_wav):
    data, _ = speech_wav
    result = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", data, "audio/wav"))
    assert isinstance(result, openai.types.audio.Transcription)
    assert isinstance(result.text, str) and result.text
    # the words (Whisper tiny.en; the espeak limit of test_wer.py)
    assert wer(f"{COMPLETE} {COMPLETE_2}", result.text) <= 0.18, result.text


def test_text(client, speech_wav):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", speech_wav[0]), response_format="text", language="en", temperature=0.0
    )
    assert isinstance(result, str) and result.strip()


def test_verbose_json_words_and_segments_inside_the_audio(client, speech_wav):
    data, duration = speech_wav
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("speech.wav", data),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        prompt="A short conversation.",
    )
    assert isinstance(result, openai.types.audio.TranscriptionVerbose)
    assert result.duration == pytest.approx(duration, abs=0.05)
    assert result.language and result.segments and result.words
    for segment in result.segments:
        assert 0.0 <= segment.start <= segment.end <= duration + EPS
    previous = 0.0
    for word in result.words:
        assert previous - EPS <= word.start <= word.end <= duration + EPS
        previous = word.start


def test_verbose_json_granularity_choice(client, speech_wav):
    only_segments = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", speech_wav[0]), response_format="verbose_json"
    )
    assert only_segments.segments and only_segments.words is None
    only_words = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", speech_wav[0]),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert only_words.words and only_words.segments is None


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles(client, speech_wav, fmt):
    data, duration = speech_wav
    result = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", data), response_format=fmt)
    assert isinstance(result, str)
    cues = [line for line in result.splitlines() if "-->" in line]
    assert cues
    if fmt == "vtt":
        assert result.startswith("WEBVTT")
    sep = "," if fmt == "srt" else "."
    for cue in cues:
        start, end = cue.split(" --> ")
        seconds = [int(t[:2]) * 3600 + int(t[3:5]) * 60 + float(t[6:].replace(sep, ".")) for t in (start, end)]
        assert 0.0 <= seconds[0] <= seconds[1] <= duration + EPS


def test_other_container_formats(client, speech_wav, tmp_path):
    """Any format PyAV decodes: an Ogg/Opus file made with PyAV."""
    import av
    import numpy as np

    from services.common.audio import decode_file

    audio = decode_file(speech_wav[0], 48000)
    path = tmp_path / "speech.ogg"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    result = client.audio.transcriptions.create(model="whisper-1", file=path.open("rb"), response_format="verbose_json")
    assert result.duration == pytest.approx(speech_wav[1], abs=0.1)


def test_fifty_megabyte_upload_is_413(asr):
    body = b"\x00" * (50 * 1024 * 1024)
    response = httpx.post(asr.url + "/v1/audio/transcriptions", files={"file": ("big.wav", body)}, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"


def test_sdk_sees_413_as_an_api_error(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", b"\x00" * (26 * 1024 * 1024)))
    assert info.value.status_code == 413


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("not audio", lambda wav: b"this is a text file, not audio\n" * 100),
        ("truncated header", lambda wav: wav[:30]),
        ("empty", lambda wav: b""),
    ],
)
def test_undecodable_uploads_are_400(client, speech_wav, name, make):
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("x.wav", make(speech_wav[0])))
    assert info.value.body["code"] == "bad_audio"
    assert info.value.body["message"]


def test_wav_cut_mid_data_transcribes_what_is_there(client, speech_wav):
    """A WAV cut inside its sample data (a dropped upload): the audio that arrived is transcribed."""
    data, duration = speech_wav
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("cut.wav", data[: len(data) // 2]), response_format="verbose_json"
    )
    assert result.duration == pytest.approx(duration / 2, abs=0.05)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"response_format": "docx"}, "bad_response_format"),
        ({"timestamp_granularities[]": "syllable"}, "bad_timestamp_granularities"),
        ({"temperature": "hot"}, "bad_temperature"),
        ({"temperature": "3"}, "bad_temperature"),
        ({"language": "en\n"}, "bad_language"),
        ({"language": "../etc"}, "bad_language"),
        ({"language": b"\xed\xa0\x80"}, "bad_language"),  # a lone surrogate's UTF-8 bytes
    ],
)
def test_bad_fields_are_400(asr, speech_wav, fields, code):
    response = httpx.post(
        asr.url + "/v1/audio/transcriptions", files={"file": ("a.wav", speech_wav[0])}, data=fields, timeout=60
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_missing_file_and_wrong_content_type(asr):
    response = httpx.post(asr.url + "/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"x": ("a", b"1")})
    assert response.status_code == 400 and response.json()["error"]["code"] == "missing_file"
    response = httpx.post(asr.url + "/v1/audio/transcriptions", json={"file": "nope"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"


def test_metrics_exported(asr):
    text = httpx.get(asr.url + "/metrics").text
    for name in (
        "voice_asr_final_latency_seconds_bucket",
        "voice_asr_turn_detector_seconds_count",
        "voice_asr_transcribe_seconds_count",
        "voice_asr_active_sessions",
        "voice_asr_rejected_sessions_total",
        "voice_asr_audio_seconds_total",
    ):
        assert name in text
