"""What a TTS process holds once: the engine (loaded in a thread at start), the voice store and
the synthesis scheduler. Sessions and REST handlers reach everything through this object."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from services.common import logs
from services.common.breaker import EngineGuard

from .config import TTSConfig
from .engine_choice import HUB_REPOS, EngineChoice, choose
from .engines.base import Engine
from .metrics import record_cache
from .scheduler import Scheduler
from .synthesis import Synthesizer
from .voices.backends import Backend, DirectoryBackend, RedisBackend
from .voices.store import VoiceStore

log = logging.getLogger("voice.tts")


def build_engine(config: TTSConfig, choice: EngineChoice | None = None) -> Engine:
    choice = choice or choose(config)
    if choice.engine == "espeak":
        from .engines.espeak import EspeakEngine

        return EspeakEngine(config.espeak_voice)
    if choice.engine == "piper":
        from .engines.piper import PiperEngine

        return PiperEngine(config.piper)
    from .engines.chatterbox import ChatterboxEngine

    return ChatterboxEngine(choice.chatterbox or config.chatterbox)


def describe_model(config: TTSConfig, choice: EngineChoice) -> str:
    """What the engine speaks with, for the start log, /ready and the `ready` event."""
    if choice.engine == "piper":
        return f"piper:{config.piper.default_voice}"
    if choice.engine == "chatterbox":
        settings = choice.chatterbox or config.chatterbox
        # a checkpoint directory by its name: clients are never told the server's file system paths
        return f"chatterbox-{settings.variant}:{Path(settings.model_dir).name or HUB_REPOS[settings.variant]}"
    return f"espeak-ng:{config.espeak_voice}"


def build_backend(config: TTSConfig) -> Backend:
    return RedisBackend(config.redis_url) if config.redis_url else DirectoryBackend(config.voices_dir)


class TTSRuntime:
    def __init__(self, config: TTSConfig) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.store: VoiceStore | None = None
        self.synth: Synthesizer | None = None
        self.load_error: str | None = None
        self.choice: EngineChoice | None = None
        self.model: str = ""
        self._load_task: asyncio.Task | None = None

    async def start(self) -> None:
        self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        try:
            self.choice = await asyncio.to_thread(choose, self.config)
            logs.event(log, "engine selected", engine=self.choice.engine, reason=self.choice.reason)
            engine = await asyncio.to_thread(build_engine, self.config, self.choice)
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
        guard = EngineGuard.from_config("TTS", self.config.common)
        self.synth = Synthesizer(engine, Scheduler(self.config.max_concurrent), guard)
        self.model = describe_model(self.config, self.choice)
        self.engine = engine
        logs.event(
            log,
            "engine ready",
            engine=engine.name,
            model=self.model,
            voices=len(engine.builtin_voices()),
            sample_rate=engine.sample_rate,
            voice_store=backend.kind,
            device=getattr(engine, "device", "cpu"),
        )

    def info(self) -> dict:
        """The engine in use, for /ready and the `ready` event (empty until it is chosen)."""
        return {
            "engine": self.engine.name if self.engine else (self.choice.engine if self.choice else ""),
            "model": self.model,
            "engine_reason": self.choice.reason if self.choice else "",
        }

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
