"""What runs when on the one ASR engine of a process: priorities, batching, file slices, shedding.

Why a queue: an engine call blocks a thread for its whole length (CTranslate2 cannot be
interrupted), and a CPU holds only a few at once, so requests wait here, served by `workers`
threads off the event loop. The rules, in order of what a user notices:

1. Finals first, always. A final is taken before any waiting file slice or partial; a final
   batches only with finals, so it never rides behind partial work in one call. Work that no
   one awaits any more (a speculative final the session threw away, a partial of a turn that
   ended) is dropped before it runs.
2. Partials are shed under load: `accepts_partial` refuses a new one while a final waits or the
   queue already holds `max_pending_partials` requests; a session's partial is dropped unrun once
   that session's final is queued (its turn ended: nobody will show it), or once it waited longer
   than `partial_max_wait_s` while finals or files wait (a newer one will say more). The partial
   rate thus follows the queue, not a fixed interval. (Requests without an `owner` are never shed.)
   Finals themselves get cheaper when the engine is behind: a final taken while finals of other
   sessions still wait is marked `backlog`, and the engine decodes it in a shorter window (fewer
   words, about half the time), so a queue of finals drains instead of growing past the CPU. A
   session's own finals queued behind each other (a client sending faster than real time) do not
   count: degrading them would buy no one else time.
3. Batching: stream requests of the same kind waiting together (different sessions) run as one
   engine call of up to `batch_size` (the engine says what may share a call).
4. REST files decode in slices of about FILE_SLICE_S, so a long upload never holds a final up
   for more than one slice.
5. Every engine call goes through the `EngineGuard` (services/common/breaker.py): a timeout, GPU
   out-of-memory as a capacity error, a circuit breaker that fails new requests fast.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from services.common.breaker import EngineGuard

from . import metrics
from .engines import KINDS, ASREngine, Kind, Request
from .transcript import Transcript

PRIORITY = {kind: i for i, kind in enumerate(KINDS)}
FILE_SLICE_S = 0.3  # a REST file gives the worker back this often, so finals need not wait for it


@dataclass
class Job:
    priority: int
    seq: int
    request: Request
    future: asyncio.Future
    queued_at: float
    state: Any = None  # a REST file being decoded in slices (the engine's FileJob)
    started: float = 0.0


class Scheduler:
    def __init__(
        self,
        engine: ASREngine,
        workers: int = 1,
        batch_size: int = 1,
        max_pending_partials: int = 2,
        partial_max_wait_s: float = 0.5,
        guard: EngineGuard | None = None,
    ) -> None:
        self.engine = engine
        self.guard = guard or EngineGuard("ASR")
        self.workers = workers
        self.batch_size = batch_size
        self.max_pending_partials = max_pending_partials
        self.partial_max_wait_s = partial_max_wait_s
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Job] = []
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._seq = itertools.count()
        self.waiting = {kind: 0 for kind in KINDS}
        self.running = {kind: 0 for kind in KINDS}
        self.order: list[str] = []  # kinds in the order they started (the tests read it); bounded
        self.shed = 0  # partials dropped unrun
        self.backlogged = 0  # finals decoded in the short backlog window

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Serve the queue (needs a running event loop); the engine's `run` alone works without it."""
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="asr-engine")
        self._wakeup = asyncio.Event()
        self._tasks = [asyncio.create_task(self._serve()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ the queue
    def accepts_partial(self) -> bool:
        """Should a session ask for a partial now? No while a final waits or the queue is full."""
        if self.waiting[Kind.FINAL]:
            return False
        return self.waiting[Kind.PARTIAL] + self.waiting[Kind.FILE] < max(1, self.max_pending_partials)

    def idle(self) -> bool:
        """Nothing waiting and a worker free: a guess (an early speculative final) costs no one a slot."""
        return not any(self.waiting.values()) and sum(self.running.values()) < self.workers

    async def transcribe(self, request: Request) -> Transcript:
        """Queues `request` and waits for its result. Raises what the engine raised; cancelled
        (asyncio.CancelledError) when a partial is shed."""
        assert self._wakeup is not None, "start() not called"
        if not self.guard.ready()[0]:  # breaker open → engine_unavailable at once, nothing queued
            raise self.guard.breaker.unavailable()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiting[request.kind] += 1
        self._pending.append(Job(PRIORITY[request.kind], next(self._seq), request, future, time.perf_counter()))
        self._wakeup.set()
        return await future

    def _live(self, job: Job, now: float, finals_of: set) -> bool:
        if job.future.done():  # cancelled by its caller: nobody reads the result
            return False
        if job.request.kind != Kind.PARTIAL or job.request.owner is None:
            return True
        superseded = job.request.owner in finals_of  # its session's turn already ended
        stale = now - job.queued_at > self.partial_max_wait_s and (self.waiting[Kind.FINAL] or self.waiting[Kind.FILE])
        if superseded or stale:
            job.future.cancel()
            self.shed += 1
            metrics.partials_dropped.inc()
            return False
        return True

    def take(self) -> list[Job]:
        """The most urgent live job, plus (when it can batch) the waiting jobs that can share its call."""
        now = time.perf_counter()
        finals_of = {j.request.owner for j in self._pending if j.request.kind == Kind.FINAL and not j.future.done()}
        live = []
        for job in self._pending:
            if self._live(job, now, finals_of):
                live.append(job)
            else:
                self.waiting[job.request.kind] -= 1
        self._pending = live
        if not live:
            return []
        live.sort(key=lambda j: (j.priority, j.seq))
        first = live.pop(0)
        batch = [first]
        if self.batch_size > 1 and first.state is None and self.engine.can_batch(first.request):
            key = self.engine.batch_key(first.request)  # the kind is part of it: finals batch with finals
            for job in list(live):
                if len(batch) >= self.batch_size:
                    break
                if self.engine.can_batch(job.request) and self.engine.batch_key(job.request) == key:
                    batch.append(job)
                    live.remove(job)
        for job in batch:
            self.waiting[job.request.kind] -= 1
        if first.request.kind == Kind.FINAL and finals_of - {job.request.owner for job in batch}:
            for job in batch:
                job.request = replace(job.request, backlog=True)
            self.backlogged += len(batch)
            metrics.backlog_finals.inc(len(batch))
        return batch

    def _requeue(self, job: Job) -> None:
        if job.future.done():
            return
        self.waiting[job.request.kind] += 1
        self._pending.append(job)

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self.take()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            started = time.perf_counter()
            kind = batch[0].request.kind
            for job in batch:
                if job.state is None:  # a file's later slices are not new waits
                    metrics.queue_wait.observe(started - job.queued_at)
                    job.started = started
            self.order = (self.order + [kind])[-256:]
            self.running[kind] += 1
            try:
                results = await self.guard.call(loop.run_in_executor(self._executor, self._call, batch))
            except Exception as exc:  # the engine's error goes to the callers, the worker goes on
                results = [exc] * len(batch)
            finally:
                self.running[kind] -= 1
            if results is None:  # a file with more to decode: back in the queue, behind any waiting final
                self._requeue(batch[0])
                continue
            finished = time.perf_counter()
            for job, result in zip(batch, results, strict=True):
                metrics.transcribe.labels(job.request.kind).observe(finished - job.started)
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _call(self, batch: list[Job]) -> list[Transcript | Exception] | None:
        """Blocking, in a worker thread: one engine call for the batch (None: a file slice done)."""
        if len(batch) == 1 and batch[0].request.kind == Kind.FILE:
            job = batch[0]
            if job.state is None:
                job.state = self.engine.open_file(job.request)
            result = job.state.step(FILE_SLICE_S)
            return None if result is None else [result]
        if len(batch) == 1:
            return [self.engine.run(batch[0].request)]
        metrics.batch_size.observe(len(batch))
        return self.engine.run_many([job.request for job in batch])
