"""Agent benchmark: end of user speech → first agent audio, split by waterfall stage.

The real chain on this machine: ASR (Whisper tiny.en, ASR_TEMPERATURES=0.0, real Smart Turn and
Silero), TTS (espeak engine), the orchestrator, and a fake Claude with a fixed time to first token,
spoken to by the real anthropic SDK. A client streams espeak speech at real-time pace (20 ms
frames, like a microphone) and times, on its own clock, the end of the speech it sent and the
first agent audio it received. The orchestrator's `done` frame gives the stage split.

Our own overhead (everything but model and LLM time, after the ASR's final) = (asr_final →
llm_first_token − the fake's fixed time to first token) + (llm_first_token → tts_first_audio − the
TTS service's own time to first audio from its /metrics) + (tts_first_audio → first_audio_sent):
the SDK and HTTP, the sentence hand-off, the TTS stream round trip, resampling/encoding and the
socket write. Before the final sits the turn-taking wait (VAD hangover, stop_secs, or
max_silence_secs when Smart Turn judges the turn incomplete: a design choice, not overhead) and
the ASR's decision → final time (its final_latency metric). Two turn-taking configurations are
measured: the ASR default (smart_turn) and plain VAD with stop_secs 0.2.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import numpy as np

from bench.report import Report, median, pct
from clients.voice import AgentStream
from services.asr import config as asr_config
from services.asr.transcriber import resolved
from services.common.protocol.agent import FrameType
from tests.helpers.fake_claude import FakeClaude
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence, speak, speak_piper
from tests.helpers.stack import agent_stack

TTFT_S = 0.3  # issue 11: voice-to-voice with a fake Claude at 300 ms to first token
TURNS = 8
TTS_ENGINES = ("espeak", "piper")
FRAME_MS = 20
LEAD_S = 0.3
STOP_SECS = 0.2  # the ASR default turn_detection.stop_secs
# pipecat's Whisper threads (bench/pipecat_agent.py): its one model gets the machine's cores, up to 4;
# our ASR runs with its own defaults (ASR_WORKERS 1, ASR_CPU_THREADS auto: the same min(4, cores) for one worker)
ASR_THREADS = min(4, os.cpu_count() or 1)
QUESTION = "What is the weather like today?"  # no comma: Piper pauses at one, and vad would split the turn
REPLY = "Sure. The weather today is sunny with a light breeze. Anything else?"
STAGE_PAIRS = [
    ("asr_final", "llm_first_token"),
    ("llm_first_token", "tts_first_audio"),
    ("tts_first_audio", "first_audio_sent"),
]
STEPS = [
    ("speech_end", "asr_final", "ASR final (turn decision + transcription)"),
    ("asr_final", "llm_first_token", f"LLM first token (fake Claude TTFT {TTFT_S * 1000:.0f} ms + SDK)"),
    ("llm_first_token", "tts_first_audio", "first sentence → first TTS audio"),
    ("tts_first_audio", "first_audio_sent", "orchestrator hand-off to the client"),
]


def _metric_sums(url: str, metrics: dict[str, tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """(sum, count) of histograms, each named by (metric name, label text like '{kind="final"}')."""
    lines = httpx.get(url + "/metrics", timeout=5).text.splitlines()
    out: dict[str, tuple[float, float]] = {}
    for key, (name, labels) in metrics.items():
        values = {}
        for suffix in ("_sum", "_count"):
            prefix = f"{name}{suffix}{labels} "
            values[suffix] = sum(float(line[len(prefix) :]) for line in lines if line.startswith(prefix))
        out[key] = (values["_sum"], values["_count"])
    return out


def _tts_first_chunk_metric(url: str) -> str | None:
    text = httpx.get(url + "/metrics", timeout=5).text
    for name in (
        "voice_tts_first_audio_seconds",
        "voice_tts_first_chunk_seconds",
        "voice_tts_time_to_first_audio_seconds",
    ):
        if f"{name}_sum" in text:
            return name
    return None


@dataclass(frozen=True)
class Microphone:
    """The client's part of a microphone, shared by this bench and bench.pipecat_agent so both
    stacks hear exactly the same thing: the question (after LEAD_S of silence) in FRAME_MS frames at
    real-time pace, then silence until the turn is over, 300 ms more, the next question."""

    frames: tuple[bytes, ...]
    last_voiced_frame: int
    quiet: bytes

    @classmethod
    def of(cls, speech: np.ndarray) -> Microphone:
        step = 16000 * FRAME_MS // 1000
        question = concat(silence(LEAD_S), speech)
        pcm = (np.clip(question, -1, 1) * 32767).astype("<i2").tobytes()
        frames = tuple(pcm[i : i + step * 2] for i in range(0, len(pcm), step * 2))
        # end of speech = the last voiced sample (espeak pads ~0.35 s of near-silence after the words)
        voiced_end = int(np.nonzero(np.abs(question) > 0.01)[0][-1])
        return cls(frames, voiced_end // step, bytes(step * 2))

    async def play(
        self, send: Callable[[bytes], Awaitable[None]], more: Callable[[], bool], turn_over: asyncio.Event, state: dict
    ) -> None:
        """Questions while `more()`; `state["speech_end_at"]` = when the last voiced frame went out."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0

        async def paced(frame: bytes, last_voiced: bool = False) -> None:
            nonlocal sent
            await send(frame)
            if last_voiced:
                state["speech_end_at"] = time.monotonic()  # the last voiced frame just went out
            sent += 1
            await asyncio.sleep(max(0.0, t0 + sent * FRAME_MS / 1000 - loop.time()))

        while more():
            turn_over.clear()
            state.clear()
            for i, frame in enumerate(self.frames):
                await paced(frame, i == self.last_voiced_frame)
            while not turn_over.is_set():
                await paced(self.quiet)
            for _ in range(15):  # 300 ms between turns, still "listening"
                await paced(self.quiet)


async def _turns(url: str, speech: np.ndarray, n: int, turn_detection: dict) -> list[dict]:
    """One session, `n` turns. A sender plays the part of a microphone: 20 ms frames at real-time
    pace, all the time — the question, then silence until the answer is done, then the next one
    (the ASR's clock is the audio it receives, so silence must keep flowing for turn-taking)."""
    results: list[dict] = []
    mic = Microphone.of(speech)
    async with AgentStream(url) as agent:
        await agent.start({"sample_rate": 24000, "turn_detection": turn_detection})
        turn_over = asyncio.Event()
        state: dict = {}

        async def microphone() -> None:
            async def send(frame: bytes) -> None:
                await agent.send_frame(FrameType.AUDIO_CHUNK, frame)

            await mic.play(send, lambda: len(results) < n, turn_over, state)

        async def speaker() -> None:
            while len(results) < n:
                frame = await agent.recv()
                if frame.type == FrameType.TTS_AUDIO and "first_audio_at" not in state:
                    state["first_audio_at"] = time.monotonic()
                elif frame.type == FrameType.DONE:
                    done = frame.json()
                    if done.get("interrupted"):
                        continue  # a turn cut short by the rest of the question: the turn goes on
                    if "first_audio_at" in state and "speech_end_at" in state:
                        results.append(
                            {"voice_to_voice": state["first_audio_at"] - state["speech_end_at"], "done": done}
                        )
                    turn_over.set()

        playing = asyncio.create_task(microphone())
        try:
            await asyncio.wait_for(speaker(), 60 * n)
        finally:
            playing.cancel()
    return results


def _measure(orch: ServiceProcess, asr: ServiceProcess, tts: ServiceProcess, speech, turn_detection) -> dict:
    asr_metrics = {
        "transcribe": ("voice_asr_transcribe_seconds", '{kind="final"}'),
        "turn": ("voice_asr_turn_detector_seconds", ""),
        "final_latency": ("voice_asr_final_latency_seconds", ""),
    }
    tts_metrics = {"first": ("voice_tts_time_to_first_audio_seconds", "")}
    asr_before, tts_before = _metric_sums(asr.url, asr_metrics), _metric_sums(tts.url, tts_metrics)
    results = asyncio.run(_turns(orch.ws_url, speech, TURNS, turn_detection))
    asr_after, tts_after = _metric_sums(asr.url, asr_metrics), _metric_sums(tts.url, tts_metrics)

    def mean(after, before, key) -> float:
        count = after[key][1] - before[key][1]
        return (after[key][0] - before[key][0]) / count if count else float("nan")

    return {
        "results": results,
        "asr_transcribe": mean(asr_after, asr_before, "transcribe"),
        "smart_turn": mean(asr_after, asr_before, "turn"),
        "smart_turn_calls": (asr_after["turn"][1] - asr_before["turn"][1]) / max(1, len(results)),
        "asr_final_latency": mean(asr_after, asr_before, "final_latency"),
        "tts_first": mean(tts_after, tts_before, "first"),
    }


def _rows(m: dict) -> list[tuple[str, list[float]]]:
    """(label, per-turn values in ms) for the report; the last row is our overhead."""
    results = m["results"]

    def step(a: str, b: str) -> list[float]:
        return [r["done"]["stages_ms"][b] - r["done"]["stages_ms"][a] for r in results]

    v2v = [r["voice_to_voice"] * 1000 for r in results]
    final_latency = m["asr_final_latency"] * 1000
    tts_model = m["tts_first"] * 1000
    after_final = step("asr_final", "first_audio_sent")
    # the ASR decides when its sample clock holds enough silence; everything before that decision
    # (VAD hangover, stop_secs or max_silence_secs, the Smart Turn call) is the turn-taking wait
    turn_wait = [v - final_latency - a for v, a in zip(v2v, after_final, strict=True)]
    llm_step, tts_step, handoff = (step(*pair) for pair in STAGE_PAIRS)
    overhead = [
        (lv - TTFT_S * 1000) + (tv - tts_model) + h for lv, tv, h in zip(llm_step, tts_step, handoff, strict=True)
    ]
    rows = [("voice-to-voice: end of voiced speech sent → first agent audio received (client clock)", v2v)]
    for a, b, label in STEPS:
        rows.append((f"{label} [{a}→{b}]", step(a, b)))
    rows += [
        ("turn-taking wait before the ASR decides (derived: v2v − ASR final latency − after final)", turn_wait),
        ("ASR: decision → final sent (ASR final_latency; whisper runs partly before the decision)", [final_latency]),
        ("  model: faster-whisper per final (ASR /metrics)", [m["asr_transcribe"] * 1000]),
        (f"  model: Smart Turn per decision ({m['smart_turn_calls']:.1f} per turn)", [m["smart_turn"] * 1000]),
        ("model: TTS time to first audio (TTS /metrics)", [tts_model]),
        ("LLM: fixed time to first token", [TTFT_S * 1000]),
        ("our overhead: (final→token − TTFT) + (token→TTS audio − TTS model) + hand-off", overhead),
    ]
    return rows


def configurations() -> dict[str, tuple[np.ndarray, dict]]:
    """(user speech, turn_detection) per column. The user speaks in the Piper voice (human-like
    prosody); the espeak column is the hard case: Smart Turn v3.2 hears espeak's flat intonation
    as unfinished about half the time, so that turn waits for a re-check or the transcript."""
    piper, espeak = speak_piper(QUESTION), speak(QUESTION)
    smart_turn = {"mode": "smart_turn", "stop_secs": STOP_SECS}
    return {
        f"Piper user, smart_turn, stop_secs {STOP_SECS}": (piper, smart_turn),
        f"Piper user, vad, stop_secs {STOP_SECS}": (piper, {"mode": "vad", "stop_secs": STOP_SECS}),
        f"espeak user, smart_turn, stop_secs {STOP_SECS}": (espeak, smart_turn),
    }


def measure_all(engines: tuple[str, ...], asr_env: dict[str, str] | None = None) -> dict[str, dict]:
    measured: dict[str, dict] = {}
    claude = FakeClaude(reply=REPLY, ttft_s=TTFT_S, token_delay_s=0.02)
    configs = configurations()
    for engine in engines:
        with agent_stack(
            f"bench-agent-{engine}",
            claude,
            orchestrator_env={"LLM_MAX_RETRIES": "0"},
            asr_env={"ASR_CPU_THREADS": "0", **(asr_env or {})},  # the default (auto), not the tests' 1
            tts_env={"TTS_ENGINE": engine},
        ) as stack:
            warm = next(iter(configs.values()))[0]
            asyncio.run(_turns(stack.orchestrator.ws_url, warm, 1, {"mode": "vad"}))  # warm-up: connections
            for name, (speech, td) in configs.items():
                measured[f"{engine} TTS, {name}"] = _measure(stack.orchestrator, stack.asr, stack.tts, speech, td)
    return measured


def run(report: Report, engines: tuple[str, ...] = TTS_ENGINES) -> None:
    measured = measure_all(engines)

    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    auto = resolved(asr_config.load({}))
    report.section(
        "Agent: end of user speech → first agent audio",
        f"{TURNS} turns per configuration in one session each. A client plays a microphone: the question "
        f'"{QUESTION}" (Piper en_US-joe-medium, or espeak-ng in the hard-case column), then '
        f"silence, in {FRAME_MS} ms frames at real-time pace, nonstop. ASR: Whisper tiny.en with "
        f"ASR_TEMPERATURES=0.0 (one decode, no fallback), ASR_WORKERS and ASR_CPU_THREADS at their defaults "
        f"(auto: {auto.workers} × {auto.cpu_threads} threads here), real Smart Turn v3.2 + "
        f"Silero VAD. TTS: {' and '.join(engines)} engines (one stack each). "
        f"LLM: fake Claude with a fixed {TTFT_S * 1000:.0f} ms time to first token, through the real anthropic "
        "SDK. Milliseconds, medians and p95 over turns; model times are means from the services' /metrics. "
        "Our overhead is the orchestrator's part after the ASR final: the SDK and HTTP around the fixed TTFT, the "
        "sentence hand-off and TTS service path around the TTS model time, and the hand-off to the socket. "
        "With Smart Turn, the real model may judge espeak's flat question incomplete: that turn then ends at a "
        "re-check or on its transcript (ASR_QUESTION_COMPLETE_SECS for a question), a wait that is the "
        "turn-taking design, not overhead. "
        f"Load average at the end of the run (1/5/15 min): {load}.",
    )
    header = ["measure"]
    for name in measured:
        header += [f"{name} median", "p95"]
    table: list[list[object]] = []
    columns = {name: _rows(m) for name, m in measured.items()}
    first = next(iter(columns.values()))
    for i, (label, _values) in enumerate(first):
        row: list[object] = [label]
        for rows in columns.values():
            values = rows[i][1]
            row += [median(values), pct(values, 0.95) if len(values) > 1 else ""]
        table.append(row)
    report.table(header, table)
    for name, rows in columns.items():
        print(
            f"[bench agent] {name}: v2v median {median(rows[0][1]):.0f} ms, "
            f"overhead median {median(rows[-1][1]):.0f} ms"
        )

    def draw(ax) -> None:
        for y, m in enumerate(measured.values()):
            left = 0.0
            for j, (a, b, label) in enumerate(STEPS):
                value = median([r["done"]["stages_ms"][b] - r["done"]["stages_ms"][a] for r in m["results"]])
                ax.barh([y], [value], left=left, color=f"C{j}", label=label.split(" [")[0] if y == 0 else None)
                left += value
        ax.set_yticks(range(len(measured)), list(measured))
        ax.set_xlabel("ms after the orchestrator got speech_end (medians)")
        ax.legend(fontsize=7, loc="upper right")
        ax.set_title("Agent waterfall")

    report.plot("agent_waterfall", draw)


def main() -> None:
    """`python -m bench.agent [--env K=V ...] [--engines espeak,piper]`: the agent table alone, printed
    (before/after comparisons of an ASR setting)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--env", action="append", default=[], help="ASR setting for this run")
    parser.add_argument("--engines", default=",".join(TTS_ENGINES))
    args = parser.parse_args()
    measured = measure_all(tuple(args.engines.split(",")), dict(kv.split("=", 1) for kv in args.env))
    for name, m in measured.items():
        rows = _rows(m)
        split = ", ".join(f"{label.split(' [')[0]} {median(values):.0f}" for label, values in rows[1:5])
        print(f"[bench agent] {name}: v2v median {median(rows[0][1]):.0f} ms p95 {pct(rows[0][1], 0.95):.0f}; {split}")


if __name__ == "__main__":
    main()
