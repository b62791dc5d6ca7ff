"""The voice store the service talks to: validation, a bounded in-process LRU, the backend.

Resolving a voice: built-in voices come from the engine; a registered voice comes from the LRU,
else from the backend (conditionals for this engine's fingerprint, or computed from the stored
reference clip and written back). A voice in the LRU keeps working while Redis is down;
registering, listing and deleting need the backend and fail with `voice_store_unavailable`.
Conditionals live on the engine's device only inside a request: the cache holds them, the
model never does.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from services.common.audio import AudioFormatError, AudioTooLong, decode_file, wav_bytes
from services.tts.engines.base import Engine

from .backends import Backend, StoreUnavailable, VoiceError, VoiceMeta, check_id

STORE_RATE = 24000
DEFAULT_ALIAS = "default"


class VoiceCache:
    """Voice id → conditionals, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, object] = OrderedDict()

    def get(self, voice_id: str) -> object | None:
        if voice_id not in self._items:
            return None
        self._items.move_to_end(voice_id)
        return self._items[voice_id]

    def put(self, voice_id: str, conditionals: object) -> None:
        self._items[voice_id] = conditionals
        self._items.move_to_end(voice_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, voice_id: str) -> None:
        self._items.pop(voice_id, None)

    def __len__(self) -> int:
        return len(self._items)


def decode_reference(data: bytes, min_s: float, max_s: float) -> np.ndarray:
    """Uploaded bytes → mono float32 at 24 kHz, or VoiceError(bad_audio / too_short / too_long)."""
    if not data:
        raise VoiceError("bad_audio", "reference audio is empty")
    try:  # bounded while decoding: a few MB of FLAC silence cannot expand to hours of samples
        audio = decode_file(data, STORE_RATE, max_s)
    except AudioTooLong:
        raise VoiceError(
            "reference_too_long", f"reference audio is longer than {max_s:g} s (TTS_VOICE_MAX_S)", status=413
        ) from None
    except AudioFormatError as exc:
        raise VoiceError("bad_audio", f"reference audio is not decodable audio: {exc.message}") from None
    seconds = len(audio) / STORE_RATE
    if seconds < min_s:
        raise VoiceError("reference_too_short", f"reference audio is {seconds:.2f} s; at least {min_s:g} s needed")
    if seconds > max_s:
        raise VoiceError(
            "reference_too_long", f"reference audio is {seconds:.2f} s; at most {max_s:g} s allowed", status=413
        )
    if not np.any(np.abs(audio) > 1e-4):
        raise VoiceError("bad_audio", "reference audio is silent")
    return audio


class VoiceStore:
    def __init__(
        self,
        engine: Engine,
        backend: Backend,
        cache_size: int,
        min_s: float,
        max_s: float,
        on_cache: Callable[[bool], None] | None = None,
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.cache = VoiceCache(cache_size)
        self.min_s = min_s
        self.max_s = max_s
        self._on_cache = on_cache or (lambda hit: None)
        self._locks: dict[str, asyncio.Lock] = {}

    def _builtin_ids(self) -> set[str]:
        return {v.id for v in self.engine.builtin_voices()}

    async def resolve(self, voice_id: str | None) -> object:
        """Voice id (None or "default" = the engine's default) → conditionals, or VoiceError(unknown_voice)."""
        if voice_id == DEFAULT_ALIAS and DEFAULT_ALIAS not in self._builtin_ids():
            voice_id = None  # "default" names the engine's default voice on every engine, not only Chatterbox
        if voice_id is None:
            voices = self.engine.builtin_voices()
            if not voices:
                raise VoiceError("no_voice", "this model has no built-in voice: register one and pass voice_id")
            voice_id = voices[0].id
        if voice_id in self._builtin_ids():
            return self.engine.builtin_conditionals(voice_id)
        if not self.engine.registers_voices:  # only its own voices: a stored clip would be ignored
            raise VoiceError(
                "unknown_voice",
                f"no voice {voice_id!r}; the {self.engine.name} engine speaks: "
                + ", ".join(sorted(self._builtin_ids())),
                status=404,
            )
        voice_id = check_id(voice_id)
        cached = self.cache.get(voice_id)
        if cached is not None:
            self._on_cache(True)
            return cached
        self._on_cache(False)
        lock = self._locks.setdefault(voice_id, asyncio.Lock())
        try:
            return await self._load(voice_id, lock)
        finally:
            if not lock.locked() and self._locks.get(voice_id) is lock:
                del self._locks[voice_id]  # unknown ids must not grow this dict forever

    async def _load(self, voice_id: str, lock: asyncio.Lock) -> object:
        async with lock:  # one load/compute per voice, however many requests want it
            cached = self.cache.get(voice_id)
            if cached is not None:
                return cached
            blob = await self.backend.get_conditionals(voice_id, self.engine.fingerprint)
            if blob is not None:
                conditionals = await asyncio.to_thread(self.engine.deserialize, blob)
            else:
                wav = await self.backend.get_wav(voice_id)
                if wav is None:
                    raise VoiceError("unknown_voice", f"no voice {voice_id!r}", status=404)
                audio = await asyncio.to_thread(decode_file, wav, STORE_RATE, self.max_s + 1.0)
                conditionals = await asyncio.to_thread(self.engine.compute_conditionals, audio, STORE_RATE)
                blob = await asyncio.to_thread(self.engine.serialize, conditionals)
                await self.backend.put_conditionals(voice_id, self.engine.fingerprint, blob)
            self.cache.put(voice_id, conditionals)
            return conditionals

    async def register(self, voice_id: str | None, name: str | None, data: bytes) -> VoiceMeta:
        if not self.engine.registers_voices:
            raise VoiceError(
                "cloning_unsupported",
                f"the {self.engine.name} engine cannot clone voices; run TTS_ENGINE=chatterbox to register one",
            )
        if voice_id is None or voice_id == "":
            import uuid

            voice_id = "voice-" + uuid.uuid4().hex[:12]
        voice_id = check_id(voice_id)
        if voice_id in self._builtin_ids():
            raise VoiceError("voice_exists", f"{voice_id!r} is a built-in voice and cannot be replaced", status=409)
        audio = await asyncio.to_thread(decode_reference, data, self.min_s, self.max_s)
        conditionals = await asyncio.to_thread(self.engine.compute_conditionals, audio, STORE_RATE)
        blob = await asyncio.to_thread(self.engine.serialize, conditionals)
        meta = VoiceMeta(
            id=voice_id, name=name or voice_id, created_at=round(time.time(), 3), duration_s=len(audio) / STORE_RATE
        )
        await self.backend.put(meta, wav_bytes(audio, STORE_RATE), {self.engine.fingerprint: blob})
        self.cache.put(voice_id, conditionals)
        return meta

    async def list(self) -> list[dict]:
        builtin = [{"id": v.id, "name": v.name, "builtin": True} for v in self.engine.builtin_voices()]
        if not self.engine.registers_voices:
            return builtin
        stored = [{**m.to_dict(), "builtin": False} for m in await self.backend.list()]
        return builtin + stored

    async def get(self, voice_id: str) -> dict:
        for v in self.engine.builtin_voices():
            if v.id == voice_id:
                return {"id": v.id, "name": v.name, "builtin": True}
        meta = await self.backend.get_meta(check_id(voice_id))
        if meta is None:
            raise VoiceError("unknown_voice", f"no voice {voice_id!r}", status=404)
        return {**meta.to_dict(), "builtin": False}

    async def delete(self, voice_id: str) -> None:
        if voice_id in self._builtin_ids():
            raise VoiceError("builtin_voice", f"{voice_id!r} is built in and cannot be deleted", status=409)
        voice_id = check_id(voice_id)
        self.cache.drop(voice_id)
        if not await self.backend.delete(voice_id):
            raise VoiceError("unknown_voice", f"no voice {voice_id!r}", status=404)


__all__ = ["StoreUnavailable", "VoiceError", "VoiceStore", "decode_reference"]
