"""Text → speakable pieces (sentence splitting, incremental buffer)."""

import pytest

from services.common.text import IncrementalText, split_text


def test_split_keeps_every_word_and_respects_the_cap():
    text = "Hello there. How are you?  I am fine! " + "word, " * 60 + "end"
    pieces = split_text(text, 80)
    assert pieces[:3] == ["Hello there.", "How are you?", "I am fine!"]
    assert all(0 < len(p) <= 80 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_split_does_not_cut_decimals_or_inside_words():
    assert split_text("Pi is 3.14 today. Next one.", 100) == ["Pi is 3.14 today.", "Next one."]
    long_word = "x" * 50
    assert split_text(long_word, 20) == ["x" * 20, "x" * 20, "x" * 10]


def test_incremental_releases_a_sentence_as_soon_as_it_is_complete():
    buf = IncrementalText(100)
    released = []
    for token in ["Hel", "lo the", "re.", " How", " are you", "?", " Fine"]:
        released.append(buf.feed(token))
    # "Hello there." is released with the token that follows its period (a space), not at the end
    assert released == [[], [], [], ["Hello there."], [], [], ["How are you?"]]
    assert buf.flush() == ["Fine"]
    assert buf.flush() == []


def test_incremental_cuts_overlong_text_without_a_sentence_end():
    buf = IncrementalText(30)
    out = buf.feed("one two three four five six seven eight nine ten eleven")
    assert out and all(len(p) <= 30 for p in out)
    assert " ".join(out + buf.flush()).split() == "one two three four five six seven eight nine ten eleven".split()


def test_language_codes_one_validator():
    from services.common.validate import InputError, language

    assert language(None) is None and language("") is None
    assert language("en") == "en" and language("haw") == "haw" and language("pt-BR") == "pt-BR"
    for bad in ("e", "english", "en\n", "../x", "\ud800", 7, "en-" + "x" * 9):
        with pytest.raises(InputError) as info:
            language(bad)
        assert info.value.code == "bad_language"
