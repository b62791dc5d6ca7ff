"""ASR benchmark: final latency after end of speech, overhead over raw faster-whisper, turn-detector
and VAD cost, and how many real-time streams one process holds before final latency doubles.

Everything runs against the real service (`python -m services.asr` on a loopback port) with
Whisper tiny.en, the real Smart Turn v3.2 and Silero weights, and espeak-ng speech. The WER section
(raw faster-whisper vs the service on the fixed speech set) is bench/asr_wer.py, run at the end.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import websockets

from bench import asr_live, asr_wer
from bench.report import Report, median, pct
from services.asr import config as asr_config
from services.asr.features import smart_turn_features
from services.asr.transcriber import Request, Transcriber, resolved
from services.asr.turn import SmartTurn
from services.asr.vad import FRAME_SAMPLES, SileroVAD
from services.common.audio import encode
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence, speak

RATE = 16000
CHUNK_S = 0.02  # 20 ms frames, what browsers and telephony send
PAUSE_S = 1.5  # silence streamed after each utterance
STOP_SECS = 0.2
PRE_PAD_S = 0.3
TEMPERATURES = "0.0"
BEAM_SIZE = "1"
LEVELS = (1, 2, 4, 8, 16, 32)
BATCH_SIZES = (8, 1)  # the default (cross-session batching on), then off, for the comparison
UTTERANCES = (
    "How are you doing today?",
    "What time does the train leave tomorrow?",
    "Please send the report to the whole team.",
    "Can you book a table for two tonight?",
    "Thank you very much for your help.",
)


def voiced(text: str) -> np.ndarray:
    """espeak speech with its trailing silence cut, so 'end of speech' is the last voiced sample."""
    audio = speak(text)
    idx = np.nonzero(np.abs(audio) > 1e-3)[0]
    return audio[idx[0] : idx[-1] + 1]


@dataclass
class StreamStats:
    latencies: list[float] = field(default_factory=list)
    missing: int = 0
    extra_finals: int = 0
    reasons: list[str] = field(default_factory=list)


async def one_stream(url: str, utterances: list[np.ndarray], start_delay: float) -> StreamStats:
    """Streams each utterance then PAUSE_S of silence at real-time pace; latency = final received −
    the moment the chunk holding the utterance's last voiced sample was sent."""
    stats = StreamStats()
    await asyncio.sleep(start_delay)
    finals: list[float] = []
    async with websockets.connect(url + "/v1/asr/stream", max_size=None) as ws:
        config = {"type": "config", "turn_detection": {"mode": "smart_turn", "stop_secs": STOP_SECS}}
        await ws.send(json.dumps(config))

        async def read() -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "final":
                    finals.append(time.perf_counter())
                    stats.reasons.append(event["end_of_turn"]["reason"])

        reader = asyncio.create_task(read())
        step = int(CHUNK_S * RATE)
        ends: list[float] = []
        t0 = time.perf_counter()
        sent = 0
        for speech in utterances:
            audio = concat(silence(0.3), speech, silence(PAUSE_S))
            speech_end = int(0.3 * RATE) + len(speech)
            for start in range(0, len(audio), step):
                await ws.send(encode(audio[start : start + step], "pcm_s16le"))
                if start < speech_end <= start + step:
                    ends.append(time.perf_counter())
                sent += step
                delay = t0 + sent / RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
        await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(reader, 60)
    for i, end in enumerate(ends):
        nxt = ends[i + 1] if i + 1 < len(ends) else float("inf")
        got = [f for f in finals if end <= f < nxt]
        if got:
            stats.latencies.append(got[0] - end)
            stats.extra_finals += len(got) - 1
        else:
            stats.missing += 1
    return stats


async def run_level(url: str, streams: int, utterances: list[np.ndarray], rounds: int) -> StreamStats:
    rng = np.random.default_rng(streams)
    jobs = []
    for i in range(streams):
        order = [utterances[(i + k) % len(utterances)] for k in range(rounds)]
        jobs.append(one_stream(url, order, float(rng.uniform(0, 1.0))))
    total = StreamStats()
    for stats in await asyncio.gather(*jobs):
        total.latencies += stats.latencies
        total.missing += stats.missing
        total.extra_finals += stats.extra_finals
        total.reasons += stats.reasons
    return total


def time_it(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def service_run(env: dict[str, str], utterances: list[np.ndarray]) -> tuple[StreamStats, list]:
    """Single-stream baseline, then the ramp until p50 final latency passes 3× the baseline p50
    (past the 2× criterion, with room for noise) or finals go missing."""
    service = ServiceProcess("asr", env=env, label=f"bench-asr-b{env['ASR_BATCH_SIZE']}").start()
    try:
        baseline = asyncio.run(run_level(service.ws_url, 1, utterances, rounds=len(utterances) + 1))
        base_p50 = median(baseline.latencies)
        ramp: list[tuple[int, StreamStats]] = []
        for level in LEVELS:
            stats = asyncio.run(run_level(service.ws_url, level, utterances, rounds=4))
            ramp.append((level, stats))
            print(
                f"[bench asr] batch {env['ASR_BATCH_SIZE']}: {level} streams p50 {median(stats.latencies):.3f}s",
                flush=True,
            )
            if median(stats.latencies) > 3 * base_p50 or stats.missing:
                break
    finally:
        service.stop()
    return baseline, ramp


def streams_held(ramp: list[tuple[int, StreamStats]], reference: float) -> int:
    """The largest level whose p50 final latency stayed within 2× `reference`, every final delivered,
    with every lower level passing too."""
    held = 0
    for level, stats in ramp:
        if median(stats.latencies) > 2 * reference or stats.missing:
            break
        held = level
    return held


def run(report: Report) -> None:
    env = {
        "ASR_TEMPERATURES": TEMPERATURES,
        "ASR_BEAM_SIZE": BEAM_SIZE,
        "MAX_SESSIONS": "64",
        "LOG_LEVEL": "WARNING",
    }
    config = asr_config.load(env)
    utterances = [voiced(t) for t in UTTERANCES]

    # ---------------------------------------------------------------- component costs, in this process
    vad = SileroVAD()
    smart_turn = SmartTurn(config.smart_turn_model, config.turn_threads)
    turn_audio = [concat(silence(PRE_PAD_S), u, silence(STOP_SECS)) for u in utterances]
    stream_audio = concat(*[concat(u, silence(0.5)) for u in utterances])
    stream_audio = stream_audio[: len(stream_audio) // FRAME_SAMPLES * FRAME_SAMPLES]
    vad_stream = vad.stream()
    vad_total = time_it(lambda: vad_stream.probabilities(stream_audio), 3)
    vad_per_frame = [t / (len(stream_audio) // FRAME_SAMPLES) for t in vad_total]
    feature_times, model_times, decision_times = [], [], []
    for _ in range(10):  # interleaved, so the three see the same machine load
        for a in turn_audio:
            t0 = time.perf_counter()
            f = smart_turn_features(a)
            t1 = time.perf_counter()
            smart_turn.probability_from_features(f)
            t2 = time.perf_counter()
            feature_times.append(t1 - t0)
            model_times.append(t2 - t1)
            decision_times.append(t2 - t0)

    transcriber = Transcriber(config)
    transcriber.load()
    raw = [
        t
        for a in turn_audio
        for t in time_it(lambda a=a: transcriber.run(Request(a, "final", word_timestamps=True)), 5)
    ]
    transcriber.model = None  # free it before the service loads its own

    # ---------------------------------------------------------------- the service
    runs = {size: service_run({**env, "ASR_BATCH_SIZE": str(size)}, utterances) for size in BATCH_SIZES}
    baseline, _ = runs[BATCH_SIZES[0]]
    # one reference for both ramps: single-stream latency does not depend on batching, and pooling
    # both baselines keeps one noisy baseline from moving the bar
    base_p50 = median([x for base, _ in runs.values() for x in base.latencies])
    held_by = {size: streams_held(ramp_, base_p50) for size, (_, ramp_) in runs.items()}
    held = held_by[BATCH_SIZES[0]]
    lat = [x for base, _ in runs.values() for x in base.latencies]  # one session never batches: same setup
    service_part = [x - STOP_SECS for x in lat]
    overhead = median(service_part) - median(raw)

    load = os.getloadavg()
    auto = resolved(config)
    report.section(
        "ASR",
        f"Model `{config.model_name}` (Whisper tiny.en, real weights, CTranslate2) on "
        f"{'CUDA' if config.device == 'cuda' else 'CPU'} (`ASR_DEVICE={config.device}`, compute type auto → "
        f"int8 on CPU), `ASR_CPU_THREADS={config.cpu_threads}` (auto → {auto.cpu_threads} here), beam size "
        f"{BEAM_SIZE}, temperature schedule `ASR_TEMPERATURES={TEMPERATURES}` (no fallback), "
        f"`ASR_WORKERS={config.workers}` (auto → {auto.workers}), "
        f"`ASR_BATCH_SIZE={config.batch_size}` (auto → {auto.batch_size}), word timestamps on, "
        "decode capped at "
        f"{config.tokens_per_second:g} tokens/s of audio + 16. Smart Turn v3.2 CPU ONNX "
        f"({config.turn_threads} threads), Silero VAD v6. Speech: espeak-ng, {len(UTTERANCES)} sentences "
        f"(1.4–2.4 s each), streamed as pcm_s16le 16 kHz in 20 ms frames at real-time pace over a loopback "
        f"WebSocket, each followed by {PAUSE_S} s of silence; turn detection smart_turn, stop_secs {STOP_SECS}. "
        f"The machine is shared (load average at the end of the ASR run: {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} on {os.cpu_count()} cores), so absolute times carry that noise; ratios in one run are "
        "comparable.",
    )
    report.text(
        "**Final latency** = wall time from sending the 20 ms frame that holds the utterance's last voiced "
        "sample to receiving its `final`. It includes the `stop_secs` of silence the client must stream "
        f"before the turn can end ({STOP_SECS * 1000:.0f} ms at real-time pace), VAD, Smart Turn, the Whisper "
        "call and the socket. **Service part** = final latency − stop_secs. **Raw engine** = "
        "`WhisperModel.transcribe` on the same turn audio (pre-speech pad + speech + stop_secs), in the "
        "benchmark process, same settings. **Overhead** = median service part − median raw engine."
    )
    report.table(
        ["measure", "p50 (ms)", "p95 (ms)", "n"],
        [
            ["final latency after end of speech (1 stream)", median(lat) * 1e3, pct(lat, 0.95) * 1e3, len(lat)],
            [
                "service part (final latency − stop_secs)",
                median(service_part) * 1e3,
                pct(service_part, 0.95) * 1e3,
                len(lat),
            ],
            ["raw faster-whisper call, same audio", median(raw) * 1e3, pct(raw, 0.95) * 1e3, len(raw)],
            ["service overhead over raw engine (median)", overhead * 1e3, "", ""],
            [
                "Smart Turn decision incl. features",
                median(decision_times) * 1e3,
                pct(decision_times, 0.95) * 1e3,
                len(decision_times),
            ],
            [
                "  of which features (numpy log-mel, 8 s)",
                median(feature_times) * 1e3,
                pct(feature_times, 0.95) * 1e3,
                len(feature_times),
            ],
            ["  of which ONNX model", median(model_times) * 1e3, pct(model_times, 0.95) * 1e3, len(model_times)],
            [
                "Silero VAD per 32 ms frame",
                median(vad_per_frame) * 1e3,
                max(vad_per_frame) * 1e3,
                len(stream_audio) // FRAME_SAMPLES,
            ],
        ],
    )
    reasons = collections.Counter(baseline.reasons)
    report.text(
        "End-of-turn reasons of the single-stream finals: "
        + ", ".join(f"{reason} × {count}" for reason, count in sorted(reasons.items()))
        + " (the utterances are ones the real Smart Turn weights call complete)."
    )
    if baseline.missing or baseline.extra_finals:
        report.text(f"Baseline: {baseline.missing} utterances without a final, {baseline.extra_finals} extra finals.")
    report.text(
        "**Concurrent real-time streams** (each stream: 4 utterances with pauses, starts staggered over 1 s). "
        f"Reference: single-stream p50 final latency over both configurations' baselines, {base_p50 * 1e3:.0f} ms; "
        "a level passes while its p50 stays within 2× that and every final arrives (a ramp goes on to 3×). "
        "`ASR_BATCH_SIZE=8`: stream requests of different sessions waiting together are decoded in one "
        "batch; `ASR_BATCH_SIZE=1`: batching off. The default, `0` (auto), is 8 on CUDA and 1 on CPU:"
    )
    rows = []
    for size, (base, ramp_) in runs.items():
        for lvl, st in ramp_:
            rows.append(
                [
                    size,
                    lvl,
                    median(st.latencies) * 1e3,
                    pct(st.latencies, 0.95) * 1e3,
                    len(st.latencies),
                    st.missing,
                    st.extra_finals,
                    f"{median(base.latencies) * 1e3:.0f}",
                ]
            )
    report.table(
        [
            "ASR_BATCH_SIZE",
            "streams",
            "p50 final latency (ms)",
            "p95 (ms)",
            "finals",
            "missing",
            "extra finals",
            "single-stream p50 (ms)",
        ],
        rows,
    )
    report.text(
        "Streams one process held before p50 final latency doubled: "
        + ", ".join(f"**{held_} with ASR_BATCH_SIZE={size}**" for size, held_ in held_by.items())
        + ". Levels are powers of two, so the true limit lies between the level held and the next."
    )

    def draw(ax) -> None:
        for size, (_, ramp_) in runs.items():
            levels = [lvl for lvl, _ in ramp_]
            ax.plot(levels, [median(st.latencies) * 1e3 for _, st in ramp_], "o-", label=f"p50, batch {size}")
            ax.plot(levels, [pct(st.latencies, 0.95) * 1e3 for _, st in ramp_], "s--", label=f"p95, batch {size}")
        ax.axhline(2 * base_p50 * 1e3, color="grey", linestyle=":", label="2× single-stream p50")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent real-time streams")
        ax.set_ylabel("final latency after end of speech (ms)")
        ax.set_title("ASR: final latency vs. concurrent streams")
        ax.legend(fontsize=8)

    report.plot("asr_latency_vs_streams", draw)
    print(
        f"[bench asr] final latency p50 {median(lat) * 1e3:.0f} ms p95 {pct(lat, 0.95) * 1e3:.0f} ms; "
        f"raw {median(raw) * 1e3:.0f} ms; overhead {overhead * 1e3:.0f} ms; held {held} streams (batch 8), "
        f"{held_by[1]} (batch 1); "
        f"smart turn {statistics.median(decision_times) * 1e3:.1f} ms; vad {median(vad_per_frame) * 1e3:.3f} ms/frame",
        flush=True,
    )
    asr_live.report_section(report)  # the real model on live streams: latency, turns, batching on/off (issue 11)
    asr_wer.run(report)  # words beside the latency: raw faster-whisper vs REST vs stream (bench/asr_wer.py)
