"""The tuning set (bench/tuning_set.py) is held apart from the fixed set the tests score."""

from __future__ import annotations

from bench.tuning_set import SETS, TUNING
from tests.helpers.corpus import ENGINES, FIXED


def words(speech_set) -> set[str]:
    return set(speech_set.piper + speech_set.espeak) | {half for pair in speech_set.paused_halves for half in pair}


def test_the_tuning_set_shares_no_sentence_with_the_fixed_set_and_has_its_shape():
    assert not words(FIXED) & words(TUNING)
    for attr in ("piper", "espeak", "paused_halves"):
        assert len(getattr(TUNING, attr)) == len(getattr(FIXED, attr)), attr
    assert set(SETS) == {"fixed", "tuning"}
    assert all(TUNING.texts(engine) for engine in ENGINES)
