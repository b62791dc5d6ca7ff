"""The one interface both engines implement.

An engine turns one speakable piece of text into a stream of float32 mono chunks at its own
`sample_rate`. It runs in a worker thread (it blocks), takes the voice's conditionals and the
request's parameters with every call (nothing per request or per voice is stored on the engine),
and checks a cancel flag between tokens/chunks so a cancel lands within one chunk.
"""

from __future__ import annotations

import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from services.common.errors import CodedError


class EngineError(CodedError):
    """The engine cannot do this (not installed, bad device, no such voice, no audio produced)."""

    status = 503


class CancelToken:
    """Set from the event loop, read by the worker thread between tokens and chunks. A child token
    is cancelled with its parent (a request) or alone (one piece whose consumer went away)."""

    def __init__(self, parent: CancelToken | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)


@dataclass(frozen=True)
class SynthesisParams:
    exaggeration: float = 0.5
    cfg_weight: float = 0.5
    temperature: float = 0.8
    seed: int | None = None
    chunk_tokens: int | None = None  # None = engine default (TTS_CHUNK_TOKENS)
    speed: float = 1.0

    def with_seed(self) -> SynthesisParams:
        """Every request runs seeded (a fresh random seed when the client gave none), which is what
        makes the per-chunk random state reproducible and independent of other requests."""
        if self.seed is not None:
            return self
        from dataclasses import replace

        return replace(self, seed=secrets.randbits(31))


@dataclass(frozen=True)
class BuiltinVoice:
    id: str
    name: str


class Engine(ABC):
    name: str = ""
    sample_rate: int = 24000
    # identifies the conditionals format; stored conditionals with another fingerprint are recomputed
    fingerprint: str = ""
    # True when a registered reference clip changes the voice (cloning)
    clones_voices: bool = False
    # False: registering a voice is refused (`cloning_unsupported`) and only built-in voices are
    # spoken, rather than storing a clip the engine would silently ignore
    registers_voices: bool = True

    @abstractmethod
    def builtin_voices(self) -> list[BuiltinVoice]: ...

    @property
    def default_voice(self) -> str:
        return self.builtin_voices()[0].id

    @abstractmethod
    def builtin_conditionals(self, voice_id: str) -> object: ...

    @abstractmethod
    def compute_conditionals(self, reference: np.ndarray, sample_rate: int) -> object:
        """Reference clip → this engine's voice conditionals (blocking; run in a thread)."""

    @abstractmethod
    def serialize(self, conditionals: object) -> bytes: ...

    @abstractmethod
    def deserialize(self, blob: bytes) -> object: ...

    @abstractmethod
    def stream(
        self, text: str, conditionals: object, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[np.ndarray]:
        """One piece of text → float32 chunks at `sample_rate` as they are made (blocking)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        pass
