"""What a TTS process holds once: the engine (loaded in a thread at start), the voice store and
the synthesis scheduler. Sessions and REST handlers reach everything through this object."""

from __future__ import annotations

import asyncio
import logging

from services.common import logs

from .config import TTSConfig
from .engines.base import Engine
from .metrics import record_cache
from .scheduler import Scheduler
from .synthesis import Synthesizer
from .voices.backends import Backend, DirectoryBackend, RedisBackend
from .voices.store import VoiceStore

log = logging.getLogger("voice.tts")


def build_engine(config: TTSConfig) -> Engine:
    if config.engine == "espeak":
        from .engines.espeak import EspeakEngine

        return EspeakEngine(config.espeak_voice)
    from .engines.chatterbox import ChatterboxEngine

    return ChatterboxEngine(config.chatterbox)


def build_backend(config: TTSConfig) -> Backend:
    return RedisBackend(config.redis_url) if config.redis_url else DirectoryBackend(config.voices_dir)


class TTSRuntime:
    def __init__(self, config: TTSConfig) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.store: VoiceStore | None = None
        self.synth: Synthesizer | None = None
        self.load_error: str | None = None
        self._load_task: asyncio.Task | None = None

    async def start(self) -> None:
        self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        try:
            engine = await asyncio.to_thread(build_engine, self.config)
        except Exception as exc:  # reported by /ready; the process stays up to say why
            self.load_error = f"{type(exc).__name__}: {exc}"
            logs.event(log, "engine failed to load", level=logging.ERROR, error=self.load_error)
            return
        backend = build_backend(self.config)
        self.store = VoiceStore(
            engine,
            backend,
            self.config.voice_cache_size,
            self.config.voice_min_s,
            self.config.voice_max_s,
            on_cache=record_cache,
        )
        self.synth = Synthesizer(engine, Scheduler(self.config.max_concurrent))
        self.engine = engine
        logs.event(
            log,
            "engine ready",
            engine=engine.name,
            sample_rate=engine.sample_rate,
            voice_store=backend.kind,
            device=getattr(engine, "device", "cpu"),
        )

    @property
    def loaded(self) -> bool:
        return self.engine is not None

    async def stop(self) -> None:
        if self._load_task and not self._load_task.done():
            self._load_task.cancel()
        if self.synth:
            self.synth.close()
        if self.store:
            await self.store.backend.close()
