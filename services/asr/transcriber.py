"""One faster-whisper model per process, shared by every session and REST request.

Why a queue: CTranslate2 runs `workers` transcriptions at once (WhisperModel num_workers) and
each call blocks a thread, so calls go through a priority queue served by that many threads,
off the event loop. Finals come first, then REST files, then partials; partial requests are
refused when too many already wait (the session just skips that partial).

Batching: when several stream requests of the same kind (finals, or partials, of different
sessions; clips of at most 30 s; same requested language) wait at the same time, a worker takes
up to `batch_size` of them and runs them as ONE batched encode + generate (services/asr/batching.py). A request
alone, a REST file, or a batch size of 1 goes through `WhisperModel.transcribe` with the full
temperature schedule.

Random test models emit timestamps past the audio and loop until the token limit: every
reported time is clamped into the audio, and decoding is capped by the audio's duration.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from services.common import logs

from . import metrics
from .batching import MAX_CLIP_S, transcribe_batch
from .config import ASRConfig

log = logging.getLogger("voice.asr.transcriber")

SAMPLE_RATE = 16000
PRIORITY = {"final": 0, "file": 1, "partial": 2}
MAX_NEW_TOKENS = 220  # leaves room for a 224-token prompt inside Whisper's 448
FILE_SLICE_S = 0.3  # a REST file gives the worker back this often, so finals need not wait for it


@dataclass
class WordTiming:
    word: str
    start: float
    end: float
    probability: float


@dataclass
class SegmentResult:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[WordTiming] = field(default_factory=list)


@dataclass
class Transcript:
    text: str
    language: str | None
    language_probability: float
    duration: float
    segments: list[SegmentResult]

    @property
    def words(self) -> list[WordTiming]:
        return [w for s in self.segments for w in s.words]

    @property
    def confidence(self) -> float:
        """exp(mean token log-prob) over segments, in [0, 1]; 0 for no segments."""
        if not self.segments:
            return 0.0
        return float(min(1.0, max(0.0, math.exp(sum(s.avg_logprob for s in self.segments) / len(self.segments)))))


@dataclass
class Request:
    audio: np.ndarray
    kind: str = "final"
    language: str | None = None
    word_timestamps: bool = False
    prompt: str | None = None
    temperatures: tuple[float, ...] | None = None

    @property
    def batchable(self) -> bool:
        return self.kind != "file" and not self.prompt and len(self.audio) <= MAX_CLIP_S * SAMPLE_RATE


@dataclass
class _Job:
    priority: int
    seq: int
    request: Request
    future: asyncio.Future
    queued_at: float
    state: Any = None  # a REST file decoded in slices: (segment generator, info, duration, segments so far)
    started: float = 0.0


def clamp(value: float, lo: float, hi: float) -> float:
    return float(min(hi, max(lo, value)))


def decode_cap(duration_s: float, tokens_per_second: float) -> int:
    """New tokens allowed for `duration_s` of audio (per 30 s window): speech is ~3-5 tokens/s, a
    looping random model would otherwise run to 448."""
    return int(min(MAX_NEW_TOKENS, tokens_per_second * min(duration_s, 30.0) + 16))


def pick_device(device: str, compute_type: str) -> tuple[str, str]:
    """auto → CUDA float16 when CTranslate2 sees a GPU, else CPU int8."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


class Transcriber:
    def __init__(self, config: ASRConfig) -> None:
        self.config = config
        self.model = None
        self.device = ""
        self.compute_type = ""
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[_Job] = []
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._seq = itertools.count()
        self.waiting = {kind: 0 for kind in PRIORITY}

    # ------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Blocking model load (run in a thread at start-up)."""
        from faster_whisper import WhisperModel

        self.device, self.compute_type = pick_device(self.config.device, self.config.compute_type)
        self.model = WhisperModel(
            self.config.model,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.config.cpu_threads,
            num_workers=self.config.workers,
        )
        logs.event(log, "model loaded", model=self.config.model, device=self.device, compute_type=self.compute_type)

    def start(self) -> None:
        """Serve the queue (needs a running event loop); `run` alone works without it."""
        self._executor = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="whisper")
        self._wakeup = asyncio.Event()
        self._workers = [asyncio.create_task(self._serve()) for _ in range(self.config.workers)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def loaded(self) -> bool:
        return self.model is not None

    # ------------------------------------------------------------ queue
    def accepts_partial(self) -> bool:
        return self.waiting["partial"] < self.config.max_pending_partials

    async def transcribe(self, request: Request) -> Transcript:
        """Queues `request` and waits for its result. Raises what the engine raised."""
        assert self._wakeup is not None, "Transcriber.start() not called"
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiting[request.kind] += 1
        self._pending.append(_Job(PRIORITY[request.kind], next(self._seq), request, future, time.perf_counter()))
        self._wakeup.set()
        return await future

    def _take(self) -> list[_Job]:
        """The most urgent live job, plus (when it can batch) the waiting jobs that can share its call."""
        self._pending = [j for j in self._pending if not j.future.cancelled() or self._forget(j)]
        if not self._pending:
            return []
        self._pending.sort(key=lambda j: (j.priority, j.seq))
        first = self._pending.pop(0)
        batch = [first]
        if first.request.batchable and self.config.batch_size > 1:
            # finals batch with finals only: a final never waits for partials riding in its batch
            key = self._batch_key(first)
            for job in list(self._pending):
                if len(batch) >= self.config.batch_size:
                    break
                if job.request.batchable and self._batch_key(job) == key:
                    batch.append(job)
                    self._pending.remove(job)
        for job in batch:
            self.waiting[job.request.kind] -= 1
        return batch

    def _requeue(self, job: _Job) -> None:
        if job.future.cancelled():
            return
        self.waiting[job.request.kind] += 1
        self._pending.append(job)

    def _batch_key(self, job: _Job) -> tuple:
        return (job.request.kind, job.request.language, self._temperatures(job.request)[0])

    def _forget(self, job: _Job) -> bool:
        self.waiting[job.request.kind] -= 1
        return False

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._take()
            if not batch:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            started = time.perf_counter()
            for job in batch:
                if job.state is None:  # a file's later slices are not new waits
                    metrics.queue_wait.observe(started - job.queued_at)
                    job.started = started
            requests = [job.request for job in batch]
            try:
                if len(batch) == 1 and requests[0].kind == "file":
                    result = await loop.run_in_executor(self._executor, self.file_step, batch[0])
                    if result is None:  # more to decode: back in the queue, behind any waiting final
                        self._requeue(batch[0])
                        continue
                    results = [result]
                elif len(batch) == 1:
                    results = [await loop.run_in_executor(self._executor, self.run, requests[0])]
                else:
                    results = await loop.run_in_executor(self._executor, self.run_many, requests)
                    metrics.batch_size.observe(len(batch))
            except Exception as exc:  # the engine's error goes to the callers, the worker goes on
                results = [exc] * len(batch)
            finished = time.perf_counter()
            for job, result in zip(batch, results, strict=True):
                metrics.transcribe.labels(job.request.kind).observe(finished - job.started)
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _temperatures(self, request: Request) -> tuple[float, ...]:
        return request.temperatures or self.config.temperatures

    # ------------------------------------------------------------ the engine call
    def run(self, request: Request) -> Transcript:
        """Blocking faster-whisper call; also used directly by the benchmark as the raw engine time."""
        segments, info, duration = self._start(request)
        return self._transcript(list(segments), info, duration)

    def _start(self, request: Request):
        """`WhisperModel.transcribe` → (lazy segment generator, info, duration): decoding happens
        as the generator is consumed, one 30 s window at a time."""
        audio = np.asarray(request.audio, dtype=np.float32)
        duration = len(audio) / SAMPLE_RATE
        temperatures = self._temperatures(request)
        partial = request.kind == "partial"
        if partial:
            temperatures = temperatures[:1]  # no fallback for a preview
        segments, info = self.model.transcribe(
            audio,
            language=request.language,
            beam_size=self.config.beam_size,
            temperature=list(temperatures) if len(temperatures) > 1 else temperatures[0],
            word_timestamps=request.word_timestamps and not partial,
            condition_on_previous_text=False,
            initial_prompt=request.prompt or None,
            max_new_tokens=decode_cap(duration, self.config.tokens_per_second),
            vad_filter=False,
        )
        return segments, info, duration

    def _transcript(self, segments: list, info, duration: float) -> Transcript:
        results = [self._clamped(i, s, duration) for i, s in enumerate(segments)]
        return Transcript(
            text="".join(s.text for s in results).strip(),
            language=info.language,
            language_probability=float(info.language_probability or 0.0),
            duration=duration,
            segments=results,
        )

    def file_step(self, job: _Job) -> Transcript | None:
        """Blocking: decode a REST file for about FILE_SLICE_S of engine time, then give the worker
        back (None) so waiting finals go first; the Transcript once the file is done. A long
        upload thus never holds live streams up for more than one slice."""
        if job.state is None:
            segments, info, duration = self._start(job.request)
            job.state = (iter(segments), info, duration, [])
        segments, info, duration, done = job.state
        deadline = time.perf_counter() + FILE_SLICE_S
        for segment in segments:
            done.append(segment)
            if time.perf_counter() > deadline:
                return None
        return self._transcript(done, info, duration)

    def run_many(self, requests: list[Request]) -> list[Transcript | Exception]:
        """The batched call; should it fail, each request alone, so one bad clip fails only itself."""
        try:
            return list(self.run_batch(requests))
        except Exception:
            log.exception("batched transcription failed; running the requests one by one")
        results: list[Transcript | Exception] = []
        for request in requests:
            try:
                results.append(self.run(request))
            except Exception as exc:
                results.append(exc)
        return results

    def run_batch(self, requests: list[Request]) -> list[Transcript]:
        """Blocking: several stream requests in one batched model call (see batching.py)."""
        clips = [np.asarray(r.audio, dtype=np.float32) for r in requests]
        longest = max(len(c) for c in clips) / SAMPLE_RATE
        outputs = transcribe_batch(
            self.model,
            clips,
            [r.language for r in requests],
            word_timestamps=any(r.word_timestamps and r.kind != "partial" for r in requests),
            beam_size=self.config.beam_size,
            temperature=self._temperatures(requests[0])[0],
            max_new_tokens=decode_cap(longest, self.config.tokens_per_second),
        )
        transcripts = []
        for request, clip, output in zip(requests, clips, outputs, strict=True):
            duration = len(clip) / SAMPLE_RATE
            keep_words = request.word_timestamps and request.kind != "partial"
            segments = []
            for i, seg in enumerate(output["segments"]):
                words = [SimpleNamespace(**w) for w in seg.get("words", [])] if keep_words else []
                segments.append(
                    self._clamped(i, SimpleNamespace(**{**seg, "words": words, "temperature": 0.0}), duration)
                )
            for segment in segments:
                segment.temperature = self._temperatures(request)[0]
            transcripts.append(
                Transcript(
                    text="".join(s.text for s in segments).strip(),
                    language=output["language"],
                    language_probability=output["language_probability"],
                    duration=duration,
                    segments=segments,
                )
            )
        return transcripts

    @staticmethod
    def _clamped(index: int, segment, duration: float) -> SegmentResult:
        duration = math.floor(duration * 1000) / 1000  # times are reported to the ms: never round past the end
        start = clamp(segment.start, 0.0, duration)
        end = clamp(segment.end, start, duration)
        words = []
        last = start
        for w in segment.words or []:
            w_start = clamp(w.start, last, end)
            w_end = clamp(w.end, w_start, end)
            words.append(WordTiming(w.word, round(w_start, 3), round(w_end, 3), float(w.probability)))
            last = w_start
        return SegmentResult(
            id=index,
            seek=int(segment.seek),
            start=round(start, 3),
            end=round(end, 3),
            text=segment.text,
            tokens=list(segment.tokens),
            temperature=float(segment.temperature or 0.0),
            avg_logprob=float(segment.avg_logprob),
            compression_ratio=float(segment.compression_ratio),
            no_speech_prob=float(segment.no_speech_prob),
            words=words,
        )
