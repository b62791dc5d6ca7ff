"""Latency behaviours of the stream, pinned on stream time (never wall time), with the real models
(Silero, Smart Turn v3.2, Whisper tiny.en) and real espeak speech, through the session core:

- the onset after a split is kept (the ring of recent audio survives a finalize);
- a complete sentence ends before max_silence_secs (Smart Turn re-checks as the silence grows);
- a fragment ending in "to" is not finalized at stop_secs (the transcript signal);
- the end-of-turn report in `final` carries every check;
- the final and Smart Turn's first answer start before the turn ends, and stand only when nothing
  but silence came after what they heard.
The scheduler's "finals first" is pinned in tests/asr/test_scheduler.py.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import prometheus_client
import pytest

from services.asr.core import AudioIn, Configure, End, SessionCore
from services.asr.ring import AudioRing
from services.asr.turn_taking import Endpointing, TurnTaker, ends_mid_sentence
from services.asr.vad import FRAME_S, FRAME_SAMPLES
from services.common.audio import encode
from services.common.protocol.asr import StreamConfig, TurnDetection
from tests.asr.conftest import COMPLETE, said
from tests.helpers.core_stream import Collector, core_finals
from tests.helpers.speech import concat, silence
from tests.helpers.wer import wer, words

SECOND = "Bring me the red book from the shelf."
FRAGMENT = "I would really like to"


finals = core_finals  # stream time is the sample clock: as fast as the core takes it


# ---------------------------------------------------------------- the onset after a split
def test_ring_keeps_the_pad_across_a_finalize():
    ring = AudioRing(0, pad_s=0.3)
    frames = [np.full(FRAME_SAMPLES, i, dtype=np.float32) for i in range(40)]  # 1.28 s, frame i holds i
    for frame in frames[:20]:
        ring.append(frame)
    ring.finalized(speech_end=10 * FRAME_S)  # turn 1: speech ended at frame 10, finalized at frame 20
    for frame in frames[20:]:
        ring.append(frame)
    audio, start = ring.turn_audio(turn_start=25 * FRAME_S)  # turn 2 opens 5 frames after the finalize
    assert start == pytest.approx(25 * FRAME_S - 0.3, abs=1 / 16000)  # the whole pad, from before the finalize
    assert audio[0] < 20 and audio[-1] == 39
    audio, start = ring.turn_audio(turn_start=12 * FRAME_S)  # a pad never reaches into turn 1's speech
    assert start == pytest.approx(10 * FRAME_S) and audio[0] == 10


async def test_the_first_word_after_a_split_is_kept(engines):
    """Turn 1 ends on silence (vad mode, deterministic), speech resumes 0.35 s after its end, i.e.
    about 0.15 s after the finalize: the second final still has its first word."""
    audio = concat(silence(0.4), said(COMPLETE), silence(0.35), said(SECOND), silence(0.6))
    first, second = await finals(engines, audio, TurnDetection(mode="vad", stop_secs=0.2))
    assert wer(COMPLETE, first.text) <= 0.25, first.text
    assert wer(SECOND, second.text) <= 0.25, second.text
    assert words(second.text)[0] == "bring", second.text
    assert "today" not in words(second.text)  # the pad stops at the end of turn 1's speech


# ---------------------------------------------------------------- end of turn that re-checks
def pattern(taker: TurnTaker, speech_frames: int, silence_frames: int, probability: float, text: str | None):
    actions = []
    for i in range(speech_frames + silence_frames):
        now = round((i + 1) * FRAME_S, 3)
        step = taker.frame(0.9 if i < speech_frames else 0.05, now)
        actions += step
        if any(a.kind == "check_turn" for a in step):
            actions += taker.turn_probability(probability, now, text)
    return [a for a in actions if a.kind == "finalize"]


def test_an_unsure_complete_sentence_ends_at_a_recheck_not_at_max_silence():
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0, threshold=0.5)
    taker = TurnTaker(detection, endpointing=Endpointing(recheck_secs=(0.5, 1.0), decay=0.5))
    (final,) = pattern(taker, 30, 120, probability=0.2, text="Thank you very much.")
    assert final.reason == "smart_turn"
    assert [c.threshold for c in final.checks] == [0.5, 0.25, 0.125]  # the bar falls with the silence
    assert final.checks[-1].silence == pytest.approx(1.0, abs=FRAME_S)
    assert final.checks[-1].silence < detection.max_silence_secs
    once = TurnTaker(detection, endpointing=Endpointing.once())  # one check only: waits for max_silence
    (late,) = pattern(once, 30, 120, probability=0.2, text="Thank you very much.")
    assert late.reason == "silence_timeout"


def test_a_turn_ending_on_a_continuation_word_is_held():
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0, threshold=0.5)
    taker = TurnTaker(detection, endpointing=Endpointing(recheck_secs=(0.5, 1.0), continuation_wait_s=2.0))
    (final,) = pattern(taker, 30, 120, probability=0.9, text="I would like to")
    assert final.reason == "smart_turn" and final.held == "continuation"
    assert final.checks[0].silence == pytest.approx(0.2, abs=FRAME_S)  # sure, but held
    assert final.checks[-1].silence == pytest.approx(2.0, abs=FRAME_S)  # ended once the hold was over


@pytest.mark.parametrize(
    ("text", "mid"),
    [
        ("I would like to", True),
        ("I would really like to...", True),
        ("and the", True),
        ("Give it to me.", False),
        ("Thank you", False),
        ("Where are you from?", False),
        ("The appointment is on Thursday at 9.", False),  # a number is a word: not held on "at"
        ("It costs 20 dollars.", False),
        ("", False),
    ],
)
def test_continuation_words(text, mid):
    assert ends_mid_sentence(text) is mid


async def test_complete_sentences_end_before_max_silence(engines):
    """Real speech, real Smart Turn: each complete sentence ends by Smart Turn, with silence to
    spare before max_silence_secs, and its final says which checks ran."""
    texts = (COMPLETE, "What time does the train leave tomorrow?", "Thank you very much for your help.")
    audio = concat(silence(0.4), *[concat(said(t), silence(3.5)) for t in texts])
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0)
    got = await finals(engines, audio, detection)
    assert len(got) == len(texts), [f.text for f in got]
    for text, final in zip(texts, got, strict=True):
        assert wer(text, final.text) <= 0.3, final.text
        assert final.end_of_turn.reason == "smart_turn", final.end_of_turn
        deciding = final.end_of_turn.checks[-1]
        assert deciding["silence"] < detection.max_silence_secs
        assert deciding["probability"] >= deciding["threshold"]


async def test_a_fragment_ending_in_to_is_not_finalized_at_stop_secs(engines):
    """Threshold 0: Smart Turn calls everything complete, so only the transcript can hold the turn."""
    audio = concat(silence(0.4), said(FRAGMENT), silence(2.6), said(COMPLETE), silence(1.0))
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0, threshold=0.0)
    got = await finals(engines, audio, detection)
    first = got[0]
    assert words(first.text)[-1] == "to", first.text
    assert first.end_of_turn.held == "continuation"
    assert first.end_of_turn.checks[0]["silence"] == pytest.approx(0.2, abs=FRAME_S)  # said complete, held
    assert first.end_of_turn.checks[-1]["silence"] >= engines.config.continuation_wait_s - FRAME_S
    assert wer(COMPLETE, got[-1].text) <= 0.25  # the next sentence is its own turn, ended at once
    assert got[-1].end_of_turn.held is None


# ---------------------------------------------------------------- the final starts before the turn ends
def speculative(outcome: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value("voice_asr_speculative_finals_total", {"outcome": outcome})
    return value or 0.0


async def test_an_idle_engine_starts_the_final_before_the_turn_ends_and_the_final_is_that_guess(engines):
    """vad mode, stop_secs 0.5: the final's transcription starts ASR_SPECULATE_SECS into the silence
    (the engine is idle: one session, partials off) and is the one delivered; no second decode."""
    audio = concat(silence(0.4), said(COMPLETE), silence(1.0))
    before = {k: speculative(k) for k in ("started", "used", "dropped")}
    runs_before = engines.transcriber.order.count("final")
    (final,) = await finals(engines, audio, TurnDetection(mode="vad", stop_secs=0.5))
    assert wer(COMPLETE, final.text) <= 0.25, final.text
    assert speculative("started") - before["started"] == 1
    assert speculative("used") - before["used"] == 1
    assert speculative("dropped") == before["dropped"]
    assert engines.transcriber.order.count("final") - runs_before == 1


@pytest.mark.parametrize("stop_secs", [0.2, 0.192, 0.5])
def test_the_taker_knows_when_its_first_check_comes(stop_secs):
    """The early Smart Turn answer is padded to the first check's length: the frames the taker
    says are still to come are the frames after which `frame` asks for that check."""
    detection = TurnDetection(mode="smart_turn", stop_secs=stop_secs, max_silence_secs=3.0)
    for silent in range(1, 4):
        taker = TurnTaker(detection)
        now = 0.0
        for _ in range(10):
            now = round(now + FRAME_S, 3)
            taker.frame(0.9, now)
        for _ in range(silent):
            now = round(now + FRAME_S, 3)
            taker.frame(0.05, now)
        remaining = taker.frames_to_first_check()
        kinds = []
        for _ in range(remaining):
            now = round(now + FRAME_S, 3)
            kinds.append([a.kind for a in taker.frame(0.05, now)])
        assert "check_turn" in kinds[-1] and not any("check_turn" in k for k in kinds[:-1]), (silent, kinds)


def turn_guesses(outcome: str) -> float:
    value = prometheus_client.REGISTRY.get_sample_value("voice_asr_speculative_turn_checks_total", {"outcome": outcome})
    return value or 0.0


async def first_check(engines, audio: np.ndarray, speculate_s: float) -> tuple[dict, dict]:
    """The first Smart Turn check of the one turn in `audio` (smart_turn, stop_secs 0.2), with early
    guesses after `speculate_s` of silence (0: none), and how the turn-guess counters moved."""
    config = dataclasses.replace(engines.config, speculate_silence_s=speculate_s)
    before = {k: turn_guesses(k) for k in ("started", "used", "dropped", "redone")}
    core = SessionCore(config, engines)
    out = Collector()
    core.open(out)
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2)
    await core.handle(Configure(StreamConfig(partials=False, turn_detection=detection)))
    for i in range(0, len(audio), 1600):
        await core.handle(AudioIn(encode(audio[i : i + 1600], "pcm_s16le")))
    await core.handle(End())
    await asyncio.wait_for(out.closed.wait(), 120)
    await core.close()
    final = out.finals()[0]
    return final.end_of_turn.checks[0], {k: turn_guesses(k) - v for k, v in before.items()}


async def test_smart_turns_first_answer_is_guessed_early_and_equals_the_checks_own(engines):
    """An idle engine asks Smart Turn about the turn before stop_secs, on the audio padded with
    digital silence to the length the first check will hold: on digital silence that answer is
    the check's answer to the digit, so the guess changes when the turn ends, never how."""
    audio = concat(silence(0.4), said(COMPLETE), silence(1.6))
    early, moved = await first_check(engines, audio, 0.064)
    assert moved == {"started": 1, "used": 1, "dropped": 0, "redone": 0}
    late, moved = await first_check(engines, audio, 0.0)
    assert moved["started"] == 0 and moved["used"] == 0
    assert early == late  # same silence, same probability, same threshold


async def test_a_sound_after_the_guess_makes_the_check_ask_smart_turn_again(engines):
    """A quiet sound (a fricative-like tail 30 dB down) after the guess heard the turn: the guess
    is not the answer; the check asks Smart Turn about the real audio, as without any guess."""
    rng = np.random.default_rng(1)
    speech = said(COMPLETE)
    level = float(np.sqrt(np.mean(speech**2)))
    tail = (0.03 * level * rng.standard_normal(int(0.06 * 16000))).astype(np.float32)
    audio = concat(silence(0.4), speech, silence(0.1), tail, silence(1.4))
    early, moved = await first_check(engines, audio, 0.064)
    assert moved["started"] == 1 and moved["redone"] == 1 and moved["used"] == 0
    late, _ = await first_check(engines, audio, 0.0)
    assert early == late


def test_a_guess_that_missed_a_words_quiet_tail_is_not_the_final():
    """What decides whether an early guess may stand as the final: sound after what it heard."""
    from services.asr.endpointing import audible_after

    rng = np.random.default_rng(0)
    speech = concat(silence(0.3), 0.3 * rng.standard_normal(16000).astype(np.float32))
    heard = len(speech)
    assert not audible_after(concat(speech, silence(0.2)), heard)  # digital silence after it
    tail = 0.3 * 0.02 * rng.standard_normal(800).astype(np.float32)  # a fricative 34 dB down ("left")
    assert audible_after(concat(speech, tail, silence(0.15)), heard)
    # a room's steady noise (-40 dB, everywhere) is not a sound after the speech; the same tail over it is
    noisy = speech + 0.3 * 0.01 * rng.standard_normal(len(speech)).astype(np.float32)
    floor = 0.3 * 0.01 * rng.standard_normal(3200).astype(np.float32)
    assert not audible_after(concat(noisy, floor), heard)
    assert audible_after(concat(noisy, floor[:800] + 5 * tail, floor[800:]), heard)
    assert not audible_after(speech, heard)  # nothing after it


async def test_a_guess_made_in_a_short_pause_is_dropped_and_the_final_has_both_halves(engines):
    """A 0.3 s pause inside the turn (stop_secs 0.8): a guess starts in it, speech resumes, the
    guess is dropped and the final covers the words on both sides of the pause."""
    first, second = "Please bring me", "the red book from the shelf."
    audio = concat(silence(0.4), said(first), silence(0.3), said(second), silence(1.4))
    before = {k: speculative(k) for k in ("started", "used", "dropped")}
    (final,) = await finals(engines, audio, TurnDetection(mode="vad", stop_secs=0.8))
    assert wer(f"{first} {second}", final.text) <= 0.25, final.text
    assert speculative("started") - before["started"] >= 1  # in the pause: the engine was idle
    assert speculative("dropped") - before["dropped"] >= 1  # speech came back
    # a second guess after the sentence depends on whether the dropped one was still running: either
    # way at most one guess becomes the final, and the final has every word
    assert speculative("used") - before["used"] <= 1


# ---------------------------------------------------------------- intake never waits on the engine
async def test_audio_is_taken_while_the_engine_is_stuck_and_nothing_is_lost(engines):
    """The engine's one worker is held: turns pile up past MAX_PENDING_FINALS, yet every audio
    frame is taken at once (a transport keeps reading, so it keeps answering pings); once the
    engine is back every turn gets its final."""
    import threading

    from services.asr.core import MAX_PENDING_FINALS

    texts = [COMPLETE, "What time does the train leave tomorrow?"] * 3
    assert len(texts) > MAX_PENDING_FINALS
    release = threading.Event()
    blocker = engines.transcriber._executor.submit(release.wait)  # the worker thread is busy until set
    core = SessionCore(engines.config, engines)
    out = Collector()
    core.open(out)
    await core.handle(Configure(StreamConfig(partials=False, turn_detection=TurnDetection(mode="vad"))))
    try:
        for text in texts:
            audio = concat(silence(0.3), said(text), silence(0.6))
            for i in range(0, len(audio), 1600):
                # a hang guard only: with the intake, each call returns without waiting on the engine
                await asyncio.wait_for(core.handle(AudioIn(encode(audio[i : i + 1600], "pcm_s16le"))), 30)
        assert not out.finals()  # the engine really was held
    finally:
        release.set()
        blocker.result()
    await core.handle(End())
    await asyncio.wait_for(out.closed.wait(), 120)
    await core.close()
    got = out.finals()
    assert len(got) == len(texts)
    for text, final in zip(texts, got, strict=True):
        assert wer(text, final.text) <= 0.3, final.text


def test_a_sentence_smart_turn_stays_unsure_about_ends_on_its_transcript():
    """Smart Turn at 0.01 throughout: the transcript's full stop ends the turn at text_complete_s;
    a fragment ending on "to" still waits for max_silence_secs."""
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0, threshold=0.5)
    endpointing = Endpointing(recheck_secs=(0.5, 1.0), text_complete_s=1.5, question_complete_s=0.5)
    (final,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.01, "My brother works in town.")
    assert final.reason == "transcript"
    assert final.checks[-1].silence == pytest.approx(1.5, abs=FRAME_S)
    (late,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.01, "I would like to.")
    assert late.reason == "silence_timeout"


def test_a_question_smart_turn_stays_unsure_about_ends_sooner():
    """Smart Turn at 0.01 throughout: a transcript ending in "?" ends the turn at
    question_complete_s, a full stop only at text_complete_s; 0 turns the question rule off."""
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0, threshold=0.5)
    endpointing = Endpointing(recheck_secs=(0.5, 1.0), text_complete_s=1.5, question_complete_s=0.5)
    text = "What is the weather like today?"
    (final,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.01, text)
    assert final.reason == "transcript"
    assert final.checks[-1].silence == pytest.approx(0.5, abs=FRAME_S)
    off = Endpointing(recheck_secs=(0.5, 1.0), text_complete_s=1.5, question_complete_s=0.0)
    (final,) = pattern(TurnTaker(detection, endpointing=off), 30, 120, 0.01, text)
    assert final.checks[-1].silence == pytest.approx(1.5, abs=FRAME_S)
    (held,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.01, "Can you give it to?")
    assert held.reason == "transcript"  # a '?' is trusted over the continuation word (ends_mid_sentence)


def test_a_question_limit_between_the_rechecks_does_not_lower_the_bar():
    """The question limit is a look at the transcript only: an unsure statement at 0.3 (Smart Turn
    0.3 throughout) still waits for the 0.5 s re-check, where the bar falls to 0.25; a question
    with the same answers ends at the question limit."""
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0, threshold=0.5)
    endpointing = Endpointing(recheck_secs=(0.5, 1.0), text_complete_s=1.5, question_complete_s=0.3)
    (final,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.3, "My brother works in town.")
    assert final.reason == "smart_turn"
    assert [c.threshold for c in final.checks] == [0.5, 0.5, 0.25]
    assert [c.silence for c in final.checks] == pytest.approx([0.2, 0.3, 0.5], abs=FRAME_S)
    (question,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.3, "Is it far?")
    assert question.reason == "transcript"
    assert question.checks[-1].silence == pytest.approx(0.3, abs=FRAME_S)


def test_a_question_limit_at_stop_secs_ends_a_question_at_the_first_check():
    """question_complete_s ≤ stop_secs: the first check already reads the transcript, so an unsure
    question ends there, and a statement is decided as before (one check at stop_secs, the bar
    unchanged at the next re-check)."""
    detection = TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=3.0, threshold=0.5)
    endpointing = Endpointing(recheck_secs=(0.5, 1.0), text_complete_s=1.5, question_complete_s=0.2)
    (question,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.05, "Is it far?")
    assert question.reason == "transcript"
    assert len(question.checks) == 1
    (statement,) = pattern(TurnTaker(detection, endpointing=endpointing), 30, 120, 0.3, "It is far.")
    assert statement.reason == "smart_turn"
    assert [c.threshold for c in statement.checks] == [0.5, 0.25]
