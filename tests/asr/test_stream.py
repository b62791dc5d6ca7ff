"""The streaming WebSocket with real espeak speech, real VAD/Smart Turn weights and Whisper tiny.en."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.audio import resample
from tests.asr.conftest import COMPLETE, COMPLETE_2, INCOMPLETE, said
from tests.asr.streaming import StreamResult, stream_audio
from tests.helpers.speech import concat, silence, speak
from tests.helpers.wer import corpus_wer

EPS = 1e-3
FRAGMENT = "I would really like to"


def check_stream(result: StreamResult, duration: float) -> list[list[dict]]:
    """Protocol invariants every stream must keep; returns the events grouped by turn."""
    assert result.close_code == 1000, (result.close_code, result.close_reason)
    assert result.events[0]["type"] == "ready"
    session = result.events[0]["session_id"]
    assert session and all(e["session_id"] == session for e in result.events)
    assert "error" not in result.types, result.of("error")
    turns: list[list[dict]] = []
    current: list[dict] = []
    last_time = {"vad": 0.0, "partial": 0.0}
    for event in result.events[1:]:
        if event["type"] == "ready":
            assert not turns and not current, "ready only before audio"
            continue
        current.append(event)
        if event["type"] in ("speech_start", "speech_end", "partial"):
            assert -EPS <= event["timestamp"] <= duration + EPS
            # speech_end is back-dated to the last speech frame, so a partial may carry a later time
            clock = "partial" if event["type"] == "partial" else "vad"
            assert event["timestamp"] >= last_time[clock] - EPS, "stream times never go back"
            last_time[clock] = event["timestamp"]
        if event["type"] == "final":
            turns.append(current)
            current = []
    assert not current, f"events after the last final: {[e['type'] for e in current]}"
    previous_end = 0.0
    for turn in turns:
        types = [e["type"] for e in turn]
        assert types[0] == "speech_start" and types[-2:] == ["speech_end", "final"], types
        assert types.count("final") == 1
        final = turn[-1]
        assert previous_end - EPS <= final["start"] <= final["end"] <= duration + EPS
        assert final["start"] == pytest.approx(turn[0]["timestamp"], abs=EPS)
        for word in final["words"]:
            assert final["start"] - EPS <= word["start"] <= word["end"] <= final["end"] + EPS
            assert 0.0 <= word["confidence"] <= 1.0
        for partial in (e for e in turn if e["type"] == "partial"):
            assert isinstance(partial["text"], str) and 0.0 <= partial["confidence"] <= 1.0
        assert isinstance(final["text"], str) and final["language"]
        previous_end = final["end"]
    return turns


async def test_two_sentences_smart_turn_real_time(asr, two_sentences):
    """Real-time pace: two turns, ordered events, partials while speaking, Smart Turn ends both."""
    duration = len(two_sentences) / 16000
    result = await stream_audio(asr.ws_url, two_sentences, {"turn_detection": {"mode": "smart_turn"}}, speed=1.0)
    turns = check_stream(result, duration)
    assert len(turns) == 2
    assert result.of("partial"), "partials arrive while the user speaks"
    for turn in turns:
        eot = turn[-1]["end_of_turn"]
        # a complete espeak question: the real Smart Turn weights call it complete
        assert eot["reason"] == "smart_turn" and eot["probability"] >= 0.5
    # the 1.5 s pause separates the turns on the sample clock
    assert turns[1][0]["timestamp"] - turns[0][-1]["end"] >= 1.2
    # and each turn holds its sentence's words (Whisper tiny.en; the espeak limit of test_wer.py)
    heard = [(COMPLETE, turns[0][-1]["text"]), (COMPLETE_2, turns[1][-1]["text"])]
    assert corpus_wer(heard) <= 0.18, heard


async def test_incomplete_sentence_waits_for_max_silence(asr):
    """A fragment that neither signal lets end waits for max_silence_secs. Ending on "to", it is
    open in the transcript too: Smart Turn's answers on espeak alone move with the CPU's kernels
    ("I was going to say that" scored 0.64 at the 1 s re-check on an AVX2-only host, below 0.125
    where this test was written), and that sentence may well be complete."""
    audio = concat(silence(0.3), speak(FRAGMENT), silence(2.0))
    duration = len(audio) / 16000
    config = {"turn_detection": {"mode": "smart_turn", "stop_secs": 0.2, "max_silence_secs": 1.2}}
    result = await stream_audio(asr.ws_url, audio, config, speed=0)
    (turn,) = check_stream(result, duration)
    eot = turn[-1]["end_of_turn"]
    assert eot["reason"] == "silence_timeout"
    assert eot["probability"] is not None
    # every check either said "not yet" or was held by the transcript's last word
    assert eot["held"] == "continuation" or all(c["probability"] < c["threshold"] for c in eot["checks"])


async def test_vad_mode_ends_turns_on_silence(asr, two_sentences):
    result = await stream_audio(asr.ws_url, two_sentences, {"turn_detection": {"mode": "vad"}}, speed=0)
    turns = check_stream(result, len(two_sentences) / 16000)
    assert [t[-1]["end_of_turn"] for t in turns] == [{"reason": "vad", "probability": None}] * 2


async def test_none_mode_keeps_one_turn_until_end(asr, two_sentences):
    result = await stream_audio(asr.ws_url, two_sentences, {"turn_detection": {"mode": "none"}}, speed=0)
    (turn,) = check_stream(result, len(two_sentences) / 16000)
    assert turn[-1]["end_of_turn"]["reason"] == "end"
    assert [e["type"] for e in turn].count("speech_start") == 2  # the pause is inside the turn


async def test_flush_forces_a_final(asr, two_sentences):
    """Mode none: only the client ends turns. A flush in the pause ends turn 1, `end` ends turn 2."""
    first_end = 0.4 + len(speak(COMPLETE)) / 16000
    result = await stream_audio(
        asr.ws_url, two_sentences, {"turn_detection": {"mode": "none"}}, speed=0, flush_at=first_end + 0.5
    )
    turns = check_stream(result, len(two_sentences) / 16000)
    assert [t[-1]["end_of_turn"]["reason"] for t in turns] == ["flush", "end"]
    assert turns[0][-1]["end"] <= first_end + 0.6


async def test_flush_mid_speech_ends_turn_at_that_moment(asr):
    audio = concat(silence(0.3), speak(COMPLETE), silence(0.5))
    result = await stream_audio(asr.ws_url, audio, {"turn_detection": {"mode": "none"}}, speed=0, flush_at=1.2)
    turns = check_stream(result, len(audio) / 16000)
    assert turns[0][-1]["end_of_turn"]["reason"] == "flush"
    assert turns[0][-1]["end"] == pytest.approx(1.2, abs=0.15)
    assert len(turns) == 2  # the rest of the sentence opens a new turn


async def test_short_pause_does_not_split_a_turn(asr):
    """A 0.25 s pause inside the turn is shorter than stop_secs=0.6: one turn, no speech_end in between."""
    audio = concat(silence(0.3), said(INCOMPLETE), silence(0.25), said(COMPLETE), silence(1.0))
    config = {"turn_detection": {"mode": "vad", "stop_secs": 0.6}}
    result = await stream_audio(asr.ws_url, audio, config, speed=0)
    (turn,) = check_stream(result, len(audio) / 16000)
    assert [e["type"] for e in turn].count("speech_end") == 1


@pytest.mark.parametrize(("encoding", "rate"), [("mulaw", 8000), ("pcm_f32le", 44100), ("pcm_s16le", 22050)])
async def test_other_encodings_and_rates(asr, two_sentences, encoding, rate):
    """Same speech as μ-law 8 kHz / float32 44.1 kHz: same turn structure, times on the same clock."""
    audio = resample(two_sentences, 16000, rate)
    result = await stream_audio(
        asr.ws_url, audio, {"turn_detection": {"mode": "vad"}}, sample_rate=rate, encoding=encoding, speed=0
    )
    turns = check_stream(result, len(audio) / rate)
    assert len(turns) == 2
    assert turns[0][0]["timestamp"] == pytest.approx(0.4, abs=0.2)
    assert result.events[0]["config"]["sample_rate"] == 16000  # first ready: defaults
    assert result.events[1]["config"] == {**result.events[1]["config"], "sample_rate": rate, "encoding": encoding}


async def test_same_audio_same_events(asr, two_sentences):
    """Times are on the sample clock: two runs of the same audio give identical turn timestamps."""
    runs = [
        await stream_audio(asr.ws_url, two_sentences, {"turn_detection": {"mode": "smart_turn"}}, speed=0)
        for _ in range(2)
    ]
    stamps = [
        [(e["type"], e.get("timestamp", e.get("start"))) for e in r.events if e["type"] != "partial"] for r in runs
    ]
    assert stamps[0] == stamps[1]


async def test_silence_only_gives_no_turn(asr):
    audio = np.zeros(16000 * 2, dtype=np.float32)
    result = await stream_audio(asr.ws_url, audio, {}, speed=0)
    assert result.close_code == 1000
    assert result.types == ["ready", "ready"]


async def test_concurrent_sessions_share_the_model_without_cross_talk(asr, two_sentences):
    """Six sessions at once (one model, batched calls): each gets exactly its own turns."""
    import asyncio

    one = concat(silence(0.3), speak(COMPLETE), silence(1.0))
    audios = [two_sentences, one, two_sentences, one, one, two_sentences]
    results = await asyncio.gather(
        *(stream_audio(asr.ws_url, a, {"turn_detection": {"mode": "vad"}}, speed=0, chunk_s=0.05) for a in audios)
    )
    assert len({r.events[0]["session_id"] for r in results}) == len(audios)
    for audio, result in zip(audios, results, strict=True):
        turns = check_stream(result, len(audio) / 16000)
        assert len(turns) == (2 if audio is two_sentences else 1)
