"""Soak: S sessions of real speech at real-time pace for M minutes, on one stack.

- ASR sessions stream espeak-ng sentences (complete questions, so Smart Turn ends each turn) as
  16 kHz s16le in 100 ms frames on the wall clock, each followed by 2 s of silence: one final is
  owed per sentence. Latency = final received − the moment the sentence's last frame was sent.
- TTS sessions ask for one sentence at a time and "play" it (wait its duration) before the next:
  one synthesis_complete is owed per request. Latency = time to the first audio chunk.
- Agent sessions speak a sentence to /v1/agent/stream, then wait for the turn's `done` and the
  answer's playback time: one `done` with a final transcription is owed per sentence. Latency =
  first agent audio − end of the user's speech.
Every session keeps going until the deadline, then ends cleanly (ASR `end`, close); a close the
harness did not ask for is an unexpected close. RSS of each service is sampled every 5 s (the
short test: every 1 s), with the ASR's finals count; growth is judged after a warm-up, per 100
finals (docs/reliability.md, "ASR memory").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
import websockets

from tests.helpers.speech import silence, speak

from .common import dumps, metric, percentile, rss_mb, services

SENTENCES = [
    "How are you doing today?",
    "What time does the train leave tomorrow?",
    "Can you tell me the weather in Paris?",
    "Where did you put the keys?",
    "Could you book a table for two at eight?",
]
FRAME_S = 0.1
RSS_WINDOW = 3  # samples: start and end of the measured phase are the lowest of this many
GAP_S = 3.2  # past ASR_MAX_SILENCE_SECS (3.0): every sentence is its own turn, whatever Smart Turn says


@dataclass
class SessionStats:
    kind: str
    expected: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    unexpected_closes: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def paced_send(ws, audio: np.ndarray, wrap=lambda b: b) -> float:
    """Sends `audio` (16 kHz) in 100 ms frames on the wall clock; returns when the last was sent."""
    step = int(16000 * FRAME_S)
    start = time.monotonic()
    for i in range(0, len(audio), step):
        delay = start + (i / 16000) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(wrap(pcm16(audio[i : i + step])))
    return time.monotonic()


async def asr_session(url: str, deadline: float, index: int) -> SessionStats:
    stats = SessionStats("asr")
    sent_at: list[float] = []  # end-of-speech time of each sentence, in order
    try:
        async with websockets.connect(url + "/v1/asr/stream", open_timeout=30) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"

            async def reader() -> None:
                async for raw in ws:
                    event = json.loads(raw)
                    if event["type"] == "final":
                        stats.received += 1
                        if len(sent_at) >= stats.received:
                            stats.latencies.append(time.monotonic() - sent_at[stats.received - 1])
                    elif event["type"] == "error":
                        stats.error(event.get("code", "?"))

            reading = asyncio.create_task(reader())
            n = index
            while time.monotonic() < deadline and not reading.done():
                audio = speak(SENTENCES[n % len(SENTENCES)])
                n += 1
                stats.expected += 1
                sent_at.append(await paced_send(ws, audio))
                await paced_send(ws, silence(GAP_S))
            await ws.send(dumps({"type": "end"}))
            try:
                await asyncio.wait_for(reading, 120)
            except asyncio.TimeoutError:
                reading.cancel()
                stats.unexpected_closes.append("no close within 120 s of `end`")
            if ws.close_code not in (1000, None):
                stats.unexpected_closes.append(f"{ws.close_code} {ws.close_reason}")
    except websockets.ConnectionClosed as exc:
        stats.unexpected_closes.append(f"{exc.rcvd.code if exc.rcvd else 'no close frame'} {exc.reason or ''}"[:120])
    except (OSError, asyncio.TimeoutError) as exc:
        stats.unexpected_closes.append(type(exc).__name__)
    return stats


async def tts_session(url: str, deadline: float, index: int) -> SessionStats:
    stats = SessionStats("tts")
    try:
        async with websockets.connect(url + "/v1/tts/stream", max_size=None, open_timeout=30) as ws:
            ready = json.loads(await ws.recv())
            rate = ready.get("sample_rate", 24000)
            n = index
            while time.monotonic() < deadline:
                stats.expected += 1
                started = time.monotonic()
                await ws.send(dumps({"type": "synthesize", "request_id": f"r{n}", "text": SENTENCES[n % 5]}))
                n += 1
                first, samples = None, 0
                while True:
                    raw = await asyncio.wait_for(ws.recv(), 120)
                    if isinstance(raw, bytes):
                        samples += len(raw) // 4
                        continue
                    event = json.loads(raw)
                    if event["type"] == "audio_chunk" and first is None:
                        first = time.monotonic() - started
                    elif event["type"] == "synthesis_complete":
                        stats.received += 1
                        break
                    elif event["type"] == "error":
                        stats.error(event.get("code", "?"))
                        break
                if first is not None:
                    stats.latencies.append(first)
                await asyncio.sleep(max(0.0, samples / rate - (time.monotonic() - started)))  # playback
    except websockets.ConnectionClosed as exc:
        stats.unexpected_closes.append(f"{exc.rcvd.code if exc.rcvd else 'no close frame'} {exc.reason or ''}"[:120])
    except (OSError, asyncio.TimeoutError) as exc:
        stats.unexpected_closes.append(type(exc).__name__)
    return stats


def agent_frame(kind: int, payload: bytes = b"") -> bytes:
    return bytes([kind, 0]) + payload


async def agent_session(url: str, deadline: float, index: int) -> SessionStats:
    stats = SessionStats("agent")
    try:
        async with websockets.connect(url + "/v1/agent/stream", max_size=None, open_timeout=30) as ws:
            await ws.send(agent_frame(0x01, dumps({"mode": "agent"}).encode()))
            ready = None
            while ready is None:
                raw = await asyncio.wait_for(ws.recv(), 60)
                if raw[:1] == b"\x08":
                    ready = json.loads(raw[2:])
            rate = ready.get("sample_rate", 24000)
            n = index
            while time.monotonic() < deadline:
                stats.expected += 1
                spoken_at = await paced_send(ws, speak(SENTENCES[n % 5]), lambda b: agent_frame(0x02, b))
                n += 1
                first_audio, final, audio_samples = None, False, 0
                # the microphone stays open (silence) until the turn is done, as a browser's does
                silence_task = asyncio.create_task(paced_send(ws, silence(60.0), lambda b: agent_frame(0x02, b)))
                while True:
                    raw = await asyncio.wait_for(ws.recv(), 120)
                    kind = raw[0]
                    if kind == 0x04 and raw[1] & 1:
                        final = True
                    elif kind == 0x06:
                        audio_samples += (len(raw) - 2) // 2
                        if first_audio is None:
                            first_audio = time.monotonic() - spoken_at
                    elif kind == 0x07:
                        stats.error(json.loads(raw[2:]).get("code", "?"))
                    elif kind == 0x09:
                        break
                    elif kind == 0x0A and json.loads(raw[2:]).get("event") == "empty_turn":
                        break  # the ASR heard no words: nothing is answered, no `done`
                if final:
                    stats.received += 1
                if first_audio is not None:
                    stats.latencies.append(first_audio)
                await asyncio.sleep(max(0.0, audio_samples / rate - (time.monotonic() - spoken_at)))  # playback
                silence_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await silence_task
    except websockets.ConnectionClosed as exc:
        stats.unexpected_closes.append(f"{exc.rcvd.code if exc.rcvd else 'no close frame'} {exc.reason or ''}"[:120])
    except (OSError, asyncio.TimeoutError) as exc:
        stats.unexpected_closes.append(type(exc).__name__)
    return stats


def rss_now(s) -> dict[str, float]:
    """RSS (MiB) of each service of the stack that is running."""
    return {name: value for name, service in services(s).items() if (value := rss_mb(service)) is not None}


async def sample_rss(
    s,
    until: float,
    samples: dict[str, list[tuple[float, float]]],
    t0: float,
    every_s: float = 5.0,
    finals: list[tuple[float, float]] | None = None,
) -> None:
    """RSS of each service every `every_s`; with `finals`, also the ASR's finals sent so far
    (/metrics: the turns of every ASR and agent session), so growth can be judged per turn."""
    while True:
        t = round(time.monotonic() - t0, 1)
        for name, value in rss_now(s).items():
            samples.setdefault(name, []).append((t, round(value, 1)))
        if finals is not None:
            with contextlib.suppress(httpx.HTTPError):
                finals.append((t, await asyncio.to_thread(metric, s.asr, "voice_asr_finals_total")))
        if time.monotonic() >= until:
            return
        await asyncio.sleep(min(every_s, max(0.1, until - time.monotonic())))


def summarize(kind: str, sessions: list[SessionStats]) -> dict:
    latencies = [x for st in sessions for x in st.latencies]
    errors: dict[str, int] = {}
    for st in sessions:
        for code, count in st.errors.items():
            errors[code] = errors.get(code, 0) + count
    return {
        "kind": kind,
        "sessions": len(sessions),
        "expected": sum(st.expected for st in sessions),
        "received": sum(st.received for st in sessions),
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "max": max(latencies) if latencies else None,
        "unexpected_closes": [c for st in sessions for c in st.unexpected_closes],
        "errors": errors,
    }


def rss_summary(
    samples: dict[str, list[tuple[float, float]]],
    warmup_s: float,
    finals: list[tuple[float, float]] | None = None,
    window: int = RSS_WINDOW,
) -> dict[str, dict]:
    """Growth over the measured phase (after the warm-up: first inferences, first shapes and
    allocator pools allocate once). start = the lowest of the first `window` samples after the
    warm-up, end = the lowest of the last `window`: a large buffer that happens to be live at one
    sample is not growth, memory that stays is. `per_100_finals`: MiB of growth per 100 ASR finals
    sent in the measured phase (a leak grows with the turns served, not with the clock)."""
    after_finals = [n for t, n in (finals or []) if t >= warmup_s]
    turns = int(after_finals[-1] - after_finals[0]) if len(after_finals) >= 2 else None
    out = {}
    for name, series in samples.items():
        after = [v for t, v in series if t >= warmup_s] or [v for _, v in series]
        start, middle, end = min(after[:window]), after[len(after) // 2], min(after[-window:])
        growth = round(end - start, 1)
        out[name] = {
            "start": start,
            "middle": middle,
            "end": end,
            "growth_mib": growth,
            "growth_pct": round(growth / start * 100.0, 1) if start else None,
            "second_half_pct": round((end - middle) / middle * 100.0, 1) if middle else None,
            "finals": turns,
            "per_100_finals": round(growth / turns * 100.0, 1) if turns else None,
            "peak": max(v for _, v in series),
            "per_minute": [v for t, v in series if int(t) % 60 < 5],  # one 5 s sample a minute
        }
    return out


async def idle_rss(s, settle_s: float = 2.0, samples: int = 5, every_s: float = 0.5) -> dict[str, float]:
    """Each service's RSS with no session open: the lowest of `samples` readings after `settle_s`
    of idle. What a session holds while it runs (its ring, a decode's activations) is gone then,
    so two idle readings differ only by memory the stack kept: the short soak's leak check."""
    await asyncio.sleep(settle_s)
    low: dict[str, float] = {}
    for i in range(samples):
        for name, value in rss_now(s).items():
            low[name] = round(min(value, low.get(name, value)), 1)
        if i + 1 < samples:
            await asyncio.sleep(every_s)
    return low


async def run(
    s, minutes: float, asr: int, tts: int, agent: int, warmup_s: float | None = None, sample_s: float = 5.0
) -> dict:
    """`minutes` in all, the first `warmup_s` of them (default: 10 %, at most 30 s) not measured."""
    t0 = time.monotonic()
    duration = minutes * 60.0
    warmup_s = min(30.0, duration * 0.1) if warmup_s is None else warmup_s
    deadline = t0 + duration
    samples: dict[str, list[tuple[float, float]]] = {}
    finals: list[tuple[float, float]] = []
    sampler = asyncio.create_task(sample_rss(s, deadline + 5, samples, t0, sample_s, finals))
    tasks = (
        [asr_session(s.asr.ws_url, deadline, i) for i in range(asr)]
        + [tts_session(s.tts.ws_url, deadline, i) for i in range(tts)]
        + [agent_session(s.orchestrator.ws_url, deadline, i) for i in range(agent)]
    )
    results = await asyncio.gather(*tasks)
    await sampler  # its last samples come after every session has ended
    by_kind = {k: [r for r in results if r.kind == k] for k in ("asr", "tts", "agent")}
    return {
        "minutes": minutes,
        "warmup_s": warmup_s,
        "sessions": {"asr": asr, "tts": tts, "agent": agent},
        "kinds": [summarize(k, v) for k, v in by_kind.items() if v],
        "rss": rss_summary(samples, warmup_s, finals),
        "wall_s": round(time.monotonic() - t0, 1),
    }
