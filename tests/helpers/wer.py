"""Word error rate, the one measure of "heard the right words" used by tests and benchmarks.

Text is normalised the way ASR evaluations usually do (lower case, punctuation dropped, hyphens
and apostrophes folded) so that "Today." and "today" count as the same word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_DROP = re.compile(r"[^\w\s']")


def words(text: str) -> list[str]:
    text = text.lower().replace("-", " ").replace("’", "'")
    return [w.strip("'") for w in _DROP.sub(" ", text).split() if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Errors / reference words for one pair."""
    ref = words(reference)
    return edit_distance(ref, words(hypothesis)) / max(1, len(ref))


def corpus_wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Total errors over total reference words (not the mean of per-sentence rates)."""
    errors = total = 0
    for reference, hypothesis in pairs:
        ref = words(reference)
        errors += edit_distance(ref, words(hypothesis))
        total += len(ref)
    return errors / max(1, total)
