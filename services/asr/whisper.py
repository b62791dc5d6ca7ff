"""The faster-whisper engine: every call into faster-whisper / CTranslate2 lives here.

The scheduler (services/asr/scheduler.py) decides what runs when; this module only turns audio
into an engine-neutral `Transcript` (services/asr/transcript.py). All methods block: the
scheduler calls them from its worker threads, never on the event loop. CTranslate2 releases the
GIL while it encodes and generates, so the event loop keeps serving sockets meanwhile.

Three ways in:
- `run`: one request. Stream requests (finals, partials) of at most 30 s decode in a short window
  (the turn plus ASR_PARTIAL_WINDOW_PAD_SECS / ASR_FINAL_WINDOW_PAD_SECS, at least
  ASR_MIN_WINDOW_SECS; not Whisper's 30 s of padding); a final whose short-window decode fails
  Whisper's own quality checks, or loops, is decoded again the usual way, with the temperature
  fallback. REST files go through `WhisperModel.transcribe` as before.
- `run_batch`: several stream requests of different sessions in one encode + generate.
- `open_file` / `FileDecode.step`: a REST file decoded in slices, so finals never wait for a file.

Random test models emit timestamps past the audio and loop until the token limit: every
reported time is clamped into the audio, and decoding is capped by the audio's duration.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from services.common import logs

from . import metrics
from .batching import FULL_WINDOW_FRAMES, MAX_CLIP_S, transcribe_batch
from .config import ASRConfig
from .engines import Kind, Request
from .transcript import SAMPLE_RATE, Transcript, clamped_segment

log = logging.getLogger("voice.asr.whisper")

# oneDNN (inside CTranslate2's CPU build) caches its primitives per input shape, LRU up to 1024
# entries of ~0.6 MiB; stream windows vary in length (and batches in size), so with the default the
# ASR's RSS grew ~0.8 MiB per final for minutes, for no CPU time saved that we could measure
# (docs/reliability.md, "ASR memory"). Set before the first inference; an operator's value wins.
ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_DEFAULT = "0"
WARM_CLIP_S = 2.0
MAX_NEW_TOKENS = 220  # leaves room for a 224-token prompt inside Whisper's 448
FRAMES_PER_SECOND = 100
# Whisper's own fallback triggers (faster-whisper defaults): a short-window final that trips one
# is decoded again in the full window with the temperature schedule
COMPRESSION_RATIO_MAX = 2.4
LOG_PROB_MIN = -1.0


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


def window_frames(duration_s: float, pad_s: float | None, min_s: float = 0.0) -> int | None:
    """Mel frames for a short-window decode of `duration_s` of audio (at least `min_s` in all: in a
    window barely longer than a 1 s clip Whisper tends to repeat itself, "is the food is the
    food ..."), or None for the 30 s window."""
    if pad_s is None or pad_s < 0:
        return None
    frames = int(math.ceil(max(duration_s + pad_s, min_s) * FRAMES_PER_SECOND))
    return None if frames >= FULL_WINDOW_FRAMES else frames


def repeats(text: str, n: int = 2, times: int = 3) -> bool:
    """Whisper looping, not speech: a phrase of `n` words said `times` times or more, or the same
    sentence (3 words or more) twice in a row ("Turn the volume down. Turn the volume down.")."""
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if any(grams.count(g) >= times for g in set(grams)):
        return True
    sentences = [x.strip() for x in re.split(r"[.?!]+", text.lower()) if x.strip()]
    return any(a == b and len(a.split()) >= 3 for a, b in zip(sentences, sentences[1:], strict=False))


def lead_samples(request: Request) -> int:
    """Samples of context decoded before the request's own audio (services/asr/context.py)."""
    return len(request.context) if request.prefix and request.context is not None else 0


def clip(request: Request) -> np.ndarray:
    """The audio a request decodes: its context, then its own audio."""
    audio = np.asarray(request.audio, dtype=np.float32)
    if lead_samples(request):
        return np.concatenate([np.asarray(request.context, dtype=np.float32), audio])
    return audio


@dataclass
class FileDecode:
    """A REST file being decoded: faster-whisper's lazy segment generator, consumed in slices."""

    engine: WhisperEngine
    segments: Any
    info: Any
    duration: float
    done: list = field(default_factory=list)

    def step(self, budget_s: float) -> Transcript | None:
        """Decode for about `budget_s` of engine time: None while more is left, then the transcript."""
        deadline = time.perf_counter() + budget_s
        for segment in self.segments:
            self.done.append(segment)
            if time.perf_counter() > deadline:
                return None
        return self.engine.transcript(self.done, self.info, self.duration)


class WhisperEngine:
    """faster-whisper's `WhisperModel`, one per process."""

    name = "faster-whisper"

    def __init__(self, config: ASRConfig) -> None:
        self.config = config
        self.model = None
        self.device = ""
        self.compute_type = ""

    def load(self) -> None:
        """Blocking model load (run in a thread at start-up)."""
        from faster_whisper import WhisperModel

        os.environ.setdefault(ONEDNN_CACHE_ENV, ONEDNN_CACHE_DEFAULT)
        self.device, self.compute_type = pick_device(self.config.device, self.config.compute_type)
        self.model = WhisperModel(
            self.config.model,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.config.cpu_threads,
            num_workers=self.config.workers,
        )
        self._warm()
        logs.event(log, "model loaded", model=self.config.model, device=self.device, compute_type=self.compute_type)

    def _warm(self) -> None:
        """One short final (word timestamps too) on every worker at once, before /ready: each
        CTranslate2 replica allocates on its first call, so that happens here, not on the first
        user's final."""
        workers = max(1, self.config.workers)
        audio = np.random.default_rng(0).normal(0.0, 0.05, int(WARM_CLIP_S * SAMPLE_RATE)).astype(np.float32)
        barrier = threading.Barrier(workers)

        def one(_: int) -> None:
            barrier.wait(timeout=60)
            self.run_batch([Request(audio, Kind.FINAL, word_timestamps=True)])

        with ThreadPoolExecutor(workers, thread_name_prefix="asr-warm") as pool:
            list(pool.map(one, range(workers)))

    @property
    def loaded(self) -> bool:
        return self.model is not None

    # ------------------------------------------------------------ what may share a call
    def short_window(self, request: Request) -> bool:
        """Can this request decode through `run_batch` (a stream turn of at most 30 s, no prompt)?"""
        samples = lead_samples(request) + len(request.audio)
        return request.kind != Kind.FILE and not request.prompt and samples <= MAX_CLIP_S * SAMPLE_RATE

    def can_batch(self, request: Request) -> bool:
        # CTranslate2 wants one prompt length per batch: a prefixed request runs in a batch of its own
        return self.short_window(request) and not request.prefix

    def batch_key(self, request: Request) -> tuple:
        return (request.kind, request.language, self.temperatures(request)[0])

    def temperatures(self, request: Request) -> tuple[float, ...]:
        temperatures = request.temperatures or self.config.temperatures
        return temperatures[:1] if request.kind == Kind.PARTIAL else temperatures  # no fallback for a preview

    def pad_s(self, request: Request) -> float | None:
        """Padding past the audio for a short-window decode; None = Whisper's 30 s window."""
        if request.kind == Kind.PARTIAL:
            return self.config.partial_window_pad_s
        if request.kind == Kind.FINAL:
            return self.config.backlog_final_window_pad_s if request.backlog else self.config.final_window_pad_s
        return None

    # ------------------------------------------------------------ one request
    def run(self, request: Request) -> Transcript:
        """Blocking; also what the benchmark times as the raw engine."""
        duration = (lead_samples(request) + len(request.audio)) / SAMPLE_RATE
        if self.short_window(request) and window_frames(duration, self.pad_s(request), self.config.min_window_s):
            (result,) = self.run_batch([request])
            if request.kind == Kind.PARTIAL or self.trusted(result):
                if request.prefix:
                    metrics.context_decodes.labels("kept").inc()
                return result
        if request.prefix:  # the context did not help: the turn alone, as without it
            metrics.context_decodes.labels("redone_alone").inc()
            return self.run(replace(request, context=None, prefix=None))
        segments, info, duration = self._start(request)
        return self.transcript(list(segments), info, duration)

    @staticmethod
    def trusted(result: Transcript) -> bool:
        """Whisper's quality checks (those that trigger its temperature fallback), and no loop."""
        return not repeats(result.text) and all(
            s.compression_ratio <= COMPRESSION_RATIO_MAX and s.avg_logprob >= LOG_PROB_MIN for s in result.segments
        )

    def _start(self, request: Request):
        """`WhisperModel.transcribe` → (lazy segment generator, info, duration): decoding happens
        as the generator is consumed, one 30 s window at a time."""
        audio = np.asarray(request.audio, dtype=np.float32)
        duration = len(audio) / SAMPLE_RATE
        temperatures = self.temperatures(request)
        partial = request.kind == Kind.PARTIAL
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

    def transcript(self, segments: list, info, duration: float) -> Transcript:
        results = [clamped_segment(i, s, duration) for i, s in enumerate(segments)]
        return Transcript(
            text="".join(s.text for s in results).strip(),
            language=info.language,
            language_probability=float(info.language_probability or 0.0),
            duration=duration,
            segments=results,
        )

    def open_file(self, request: Request) -> FileDecode:
        segments, info, duration = self._start(request)
        return FileDecode(self, iter(segments), info, duration)

    # ------------------------------------------------------------ several requests, one call
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
        """Blocking: stream requests in one batched model call (see batching.py), in the short
        window the longest of them needs."""
        clips = [clip(r) for r in requests]
        longest = max(len(c) for c in clips) / SAMPLE_RATE
        pads = [self.pad_s(r) for r in requests]
        pad = None if any(p is None for p in pads) else max(p for p in pads if p is not None)
        outputs = transcribe_batch(
            self.model,
            clips,
            [r.language for r in requests],
            word_timestamps=any(r.word_timestamps and r.kind != Kind.PARTIAL for r in requests),
            beam_size=self.config.beam_size,
            temperature=self.temperatures(requests[0])[0],
            max_new_tokens=decode_cap(longest, self.config.tokens_per_second),
            window_frames=window_frames(longest, pad, self.config.min_window_s),
            prefixes=[r.prefix for r in requests],
        )
        transcripts = []
        for request, output in zip(requests, outputs, strict=True):
            duration = len(request.audio) / SAMPLE_RATE
            lead = lead_samples(request) / SAMPLE_RATE
            keep_words = request.word_timestamps and request.kind != Kind.PARTIAL
            temperature = self.temperatures(request)[0]
            segments = []
            for i, seg in enumerate(output["segments"]):
                words = (
                    [SimpleNamespace(**{**w, "start": w["start"] - lead, "end": w["end"] - lead}) for w in seg["words"]]
                    if keep_words and seg.get("words")
                    else []
                )
                fields = {**seg, "words": words, "temperature": temperature}
                fields["start"], fields["end"] = seg["start"] - lead, seg["end"] - lead  # times in `audio`
                segments.append(clamped_segment(i, SimpleNamespace(**fields), duration))
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
