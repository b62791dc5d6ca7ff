"""Text → speakable pieces: one-shot splitting and an incremental buffer for streamed text."""

from .buffer import IncrementalText
from .split import split_phrases, split_text

__all__ = ["IncrementalText", "split_phrases", "split_text"]
