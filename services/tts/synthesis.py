"""Runs an engine's blocking stream in a worker thread and hands its chunks to the event loop.

The thread pushes each chunk onto an asyncio queue as soon as it exists; the consumer awaits
them. Leaving the iteration early (cancel, client gone) sets the cancel token, and the worker
stops at its next token/chunk check; we wait for it so a slot is only freed once the engine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from services.common.breaker import EngineGuard

from .engines.base import CancelToken, Engine, SynthesisParams
from .scheduler import Scheduler

_END = object()


class Synthesizer:
    def __init__(self, engine: Engine, scheduler: Scheduler, guard: EngineGuard | None = None) -> None:
        self.engine = engine
        self.scheduler = scheduler
        self.guard = guard or EngineGuard("TTS")  # chunk timeout + circuit breaker (services/common/breaker.py)
        self._pool = ThreadPoolExecutor(max_workers=scheduler.max_concurrent, thread_name_prefix="tts-synth")

    async def stream(
        self, text: str, conditionals: object, params: SynthesisParams, cancel: CancelToken
    ) -> AsyncIterator[np.ndarray]:
        self.guard.check()  # breaker open → engine_unavailable before taking a slot
        async with self.scheduler.slot():
            if cancel.cancelled:
                self.guard.breaker.release()
                return
            loop = asyncio.get_running_loop()
            piece_cancel = CancelToken(parent=cancel)
            queue: asyncio.Queue = asyncio.Queue()

            def work() -> None:
                try:
                    for chunk in self.engine.stream(text, conditionals, params, piece_cancel):
                        loop.call_soon_threadsafe(queue.put_nowait, chunk)
                        if piece_cancel.cancelled:
                            break
                except BaseException as exc:  # handed to the consumer, raised there
                    loop.call_soon_threadsafe(queue.put_nowait, exc)
                finally:
                    loop.call_soon_threadsafe(queue.put_nowait, _END)

            worker = loop.run_in_executor(self._pool, work)
            stuck = False
            try:
                while True:
                    try:
                        item = await self.guard.wait(queue.get())  # no chunk for INFERENCE_TIMEOUT_S: stuck
                    except Exception as exc:
                        stuck = True
                        raise self.guard.failed(exc) from None
                    if item is _END:
                        self.guard.breaker.success()
                        break
                    if isinstance(item, BaseException):
                        raise self.guard.failed(item) from None  # GPU OOM → gpu_out_of_memory; counted
                    yield item
            finally:
                self.guard.breaker.release()  # left early (cancel, client gone): a probe slot is free again
                piece_cancel.cancel()  # no-op for a finished worker; stops one still running
                if not stuck:  # a stuck engine call is not waited for: the request fails, its slot is freed
                    await asyncio.shield(worker)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
