"""Split text into pieces a TTS model speaks well: whole sentences, none longer than a cap.

Chatterbox degrades (and its token budget runs out) on very long inputs, and a sentence is the
natural prosodic unit, so long text is cut at sentence ends first, then at clause punctuation,
then at spaces, and only as a last resort inside a word.
"""

from __future__ import annotations

import re

# a sentence ends at . ! ? … (optionally followed by closing quotes/brackets) before whitespace, or at a newline
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n+")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:—–])\s+")


def _cut_long(piece: str, max_chars: int) -> list[str]:
    """A piece over the cap → parts under it, preferring clause breaks, then spaces."""
    out: list[str] = []
    rest = piece
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = max((m.end() for m in _CLAUSE_BREAK.finditer(window)), default=0)
        if cut == 0:
            cut = window.rfind(" ") + 1
        if cut <= 0:
            cut = max_chars
        out.append(rest[:cut].strip())
        rest = rest[cut:].lstrip()
    if rest.strip():
        out.append(rest.strip())
    return [p for p in out if p]


def split_sentences(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        parts.append(text[start : match.start() + len(match.group(0).rstrip())])
        start = match.end()
    parts.append(text[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def split_text(text: str, max_chars: int) -> list[str]:
    """Whole text → speakable pieces, each at most `max_chars` long, order and words kept."""
    pieces: list[str] = []
    for sentence in split_sentences(text):
        pieces.extend(_cut_long(sentence, max_chars) if len(sentence) > max_chars else [sentence])
    return pieces


def split_phrases(text: str, max_chars: int) -> list[str]:
    """A sentence → phrases of at most `max_chars`, cut at clause breaks first (then spaces), for
    engines that only return audio once a whole input is done: the first phrase sounds sooner."""
    return _cut_long(" ".join(text.split()), max_chars)
