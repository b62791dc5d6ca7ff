"""The shared transcriber of a process: the scheduler (services/asr/scheduler.py) over the
faster-whisper engine (services/asr/whisper.py), configured from ASRConfig.

Sessions and the REST route call `transcribe(Request)`; the benchmark and tests call `run` for
the raw engine time. The names below stay importable from here for existing callers.
"""

from __future__ import annotations

import os
from dataclasses import replace

from services.common.breaker import EngineGuard

from .config import ASRConfig
from .engines import Request
from .scheduler import FILE_SLICE_S, PRIORITY, Scheduler
from .transcript import SAMPLE_RATE, SegmentResult, Transcript, WordTiming, clamp
from .whisper import MAX_NEW_TOKENS, WhisperEngine, decode_cap, pick_device

__all__ = [
    "FILE_SLICE_S",
    "MAX_NEW_TOKENS",
    "PRIORITY",
    "SAMPLE_RATE",
    "Request",
    "SegmentResult",
    "Transcript",
    "Transcriber",
    "WordTiming",
    "clamp",
    "decode_cap",
    "pick_device",
]


AUTO_BATCH_CUDA = 8
MAX_AUTO_THREADS = 4


def batch_size(config: ASRConfig) -> int:
    """ASR_BATCH_SIZE, with 0 (auto) resolved: batching on CUDA, where a batch costs little more
    than one clip, off on CPU, where three `make bench` runs decoded 8 and 16 live streams
    sooner one by one (docs/benchmarks.md, both settings side by side)."""
    if config.batch_size:
        return config.batch_size
    device, _ = pick_device(config.device, config.compute_type)
    return AUTO_BATCH_CUDA if device == "cuda" else 1


def resolved(config: ASRConfig, cores: int | None = None) -> ASRConfig:
    """The config with its auto (0) engine settings decided for this machine: the batch size, and
    the threads per worker (on CPU the cores shared by the ASR_WORKERS workers, 1 to 4 each; on
    CUDA min(4, cores)).

    ASR_WORKERS=2 on two cores (so 1 thread each) gave finals sooner under load: a CTranslate2
    call cannot be interrupted, and with one worker a final that arrives while a partial or
    another session's final runs waits for it whole. Live p50 at 4 / 8 / 16 streams: 405 / 747 /
    989 ms with 1 × 2 threads, 407 / 688 / 821 ms with 2 × 1 (medians of 3 alternated runs,
    docs/asr.md "Engine and concurrency"). It is not the default: with it, the short soak's idle
    RSS falls by more than the leak its memory check is there to catch, so that check cannot
    vouch for it yet."""
    cores = cores or os.cpu_count() or 1
    device, _ = pick_device(config.device, config.compute_type)
    threads = config.cpu_threads or (
        max(1, min(MAX_AUTO_THREADS, cores // config.workers)) if device != "cuda" else min(MAX_AUTO_THREADS, cores)
    )
    return replace(config, cpu_threads=threads, batch_size=batch_size(config))


class Transcriber(Scheduler):
    def __init__(self, config: ASRConfig) -> None:
        config = resolved(config)
        super().__init__(
            WhisperEngine(config),
            workers=config.workers,
            batch_size=config.batch_size,
            max_pending_partials=config.max_pending_partials,
            partial_max_wait_s=config.partial_max_wait_s,
            guard=EngineGuard.from_config("ASR", config.common),
        )
        self.config = config

    def load(self) -> None:
        """Blocking model load (run in a thread at start-up)."""
        self.engine.load()

    @property
    def loaded(self) -> bool:
        return self.engine.loaded

    @property
    def model(self):
        return self.engine.model

    @model.setter
    def model(self, value) -> None:
        self.engine.model = value

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def compute_type(self) -> str:
        return self.engine.compute_type

    def run(self, request: Request) -> Transcript:
        """Blocking engine call, no queue: the raw engine time the benchmark compares with."""
        return self.engine.run(request)

    def run_batch(self, requests: list[Request]) -> list[Transcript]:
        return self.engine.run_batch(requests)
