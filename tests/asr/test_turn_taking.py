"""The turn-taking state machine on synthetic VAD probabilities (pure logic, stream time only)."""

from __future__ import annotations

import pytest

from services.asr.turn_taking import TurnTaker
from services.asr.vad import FRAME_S
from services.common.protocol.asr import TurnDetection


def run(taker: TurnTaker, pattern: str, start_frame: int = 0, turn_probability: float | None = None):
    """pattern: one char per 32 ms frame, '#' speech, '.' silence. Answers check_turn with turn_probability."""
    actions = []
    for i, char in enumerate(pattern, start=start_frame + 1):
        now = round(i * FRAME_S, 3)
        step = taker.frame(0.9 if char == "#" else 0.05, now)
        actions += step
        if any(a.kind == "check_turn" for a in step):
            assert turn_probability is not None, "unexpected check_turn"
            actions += taker.turn_probability(turn_probability, now)
    return actions


def kinds(actions):
    return [a.kind if a.kind != "finalize" else f"finalize:{a.reason}" for a in actions]


def test_vad_mode():
    taker = TurnTaker(TurnDetection(mode="vad", stop_secs=0.2))
    actions = run(taker, "...##########.........")
    assert kinds(actions) == ["speech_start", "speech_end", "finalize:vad"]
    start, end, final = actions
    assert start.timestamp == pytest.approx(3 * FRAME_S)
    assert end.timestamp == pytest.approx(13 * FRAME_S) == final.speech_end
    assert final.turn_start == start.timestamp and final.probability is None
    assert not taker.in_turn


def test_single_frame_blip_opens_no_turn():
    taker = TurnTaker(TurnDetection(mode="vad", stop_secs=0.2))
    assert run(taker, "..#...#....#..") == []


def test_smart_turn_complete_finalizes():
    taker = TurnTaker(TurnDetection(mode="smart_turn", stop_secs=0.2, threshold=0.5))
    actions = run(taker, "..######........", turn_probability=0.8)
    assert kinds(actions) == ["speech_start", "speech_end", "check_turn", "finalize:smart_turn"]
    assert actions[-1].probability == 0.8


def test_smart_turn_incomplete_then_resume_is_one_turn():
    taker = TurnTaker(TurnDetection(mode="smart_turn", stop_secs=0.2, max_silence_secs=1.0, threshold=0.5))
    actions = run(taker, "..######" + "." * 10 + "#####", turn_probability=0.1)
    assert kinds(actions) == ["speech_start", "speech_end", "check_turn", "speech_start"]
    assert taker.in_turn
    # silence to max_silence_secs (1.0 s = 32 frames) after the second part
    more = run(taker, "." * 40, start_frame=23, turn_probability=0.1)
    assert kinds(more) == ["speech_end", "check_turn", "finalize:silence_timeout"]
    final = more[-1]
    assert final.turn_start == actions[0].timestamp and final.probability == 0.1
    assert final.timestamp == pytest.approx(final.speech_end + 1.0, abs=FRAME_S)


def test_short_pause_does_not_end_speech():
    taker = TurnTaker(TurnDetection(mode="vad", stop_secs=0.5))
    actions = run(taker, "..######" + "." * 10 + "######" + "." * 20)
    assert kinds(actions) == ["speech_start", "speech_end", "finalize:vad"]


def test_none_mode_only_force_ends_turns():
    taker = TurnTaker(TurnDetection(mode="none", stop_secs=0.2))
    actions = run(taker, "..######" + "." * 200)
    assert kinds(actions) == ["speech_start", "speech_end"]
    forced = taker.force("flush", 10.0)
    assert kinds(forced) == ["finalize:flush"]
    assert taker.force("flush", 10.5) == []  # nothing open: no-op


def test_flush_while_speaking_ends_speech_now():
    taker = TurnTaker(TurnDetection(mode="smart_turn"))
    run(taker, "..######")
    forced = taker.force("end", 1.0)
    assert kinds(forced) == ["speech_end", "finalize:end"]
    assert forced[0].timestamp == 1.0 == forced[1].speech_end


def test_max_turn_duration():
    taker = TurnTaker(TurnDetection(mode="none"), max_turn_s=2.0)
    actions = run(taker, "#" * 100)
    assert kinds(actions)[:3] == ["speech_start", "speech_end", "finalize:max_duration"]
    assert actions[2].timestamp - actions[0].timestamp == pytest.approx(2.0, abs=FRAME_S)
