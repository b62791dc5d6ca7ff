"""Live-stream latency benchmark of the ASR service with the real Whisper tiny.en (issue 11).

`python -m bench.asr_live [--levels 1,4,8,16] [--env K=V ...] [--out FILE.json]` starts
`python -m services.asr` on a loopback port and streams the corpus (Piper and espeak sentences,
some with a pause in the middle at a word boundary) at real-time pace over the WebSocket:

- final latency = wall time from sending the 20 ms frame that holds an utterance's last voiced
  sample to receiving the final that covers it (p50 / p95 per level);
- late = complete sentences whose final came only with the next utterance, `end` or
  `max_silence_secs` (merges and waits);
- splits = utterances answered by more than one final; merges = finals covering two utterances;
- stream WER (all finals of a stream vs. the texts), REST WER on the same clips;
- CPU seconds of the service process per second of audio streamed.

It is the measuring tool of `make bench` (bench/asr.py calls `run_live`), and usable alone for
before/after comparisons. The machine is shared with other work: compare ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field

import httpx
import numpy as np
import websockets

from bench.report import median, pct
from bench.soak.common import metric
from bench.tuning_set import SETS
from services.common.audio import encode
from tests.helpers.corpus import ENGINES, FIXED, SpeechSet
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence
from tests.helpers.wer import corpus_wer

RATE = 16000
CHUNK_S = 0.02
LEAD_S = 0.4  # silence before each utterance
PAUSE_S = 2.2  # silence after each utterance (below max_silence_secs: a waiting turn merges)
MID_PAUSE_S = 0.6
MODEL = "models/whisper-tiny.en"
# end-of-turn reasons of a final that waited (issue 11: "waited for `end` or `max_silence_secs`"); a
# "transcript" end is not one: ASR_QUESTION_COMPLETE_SECS ends a question that way at the first
# check (reports from before that change counted every "transcript" end as late)
WAITED = frozenset({"end", "silence_timeout", "max_duration", "flush"})
# the single-stream level streams every utterance of the set once (40 sentences, 16 paused ones),
# the same clips REST is scored on, so "stream WER − REST WER" is on the same audio (until
# 2026-12-01 it streamed the first 48 only, against REST on all 56)


@dataclass
class Utterance:
    text: str
    audio: np.ndarray
    voice: str


def corpus(speech_set: SpeechSet = FIXED) -> list[Utterance]:
    """A speech set's 40 single sentences, Piper and espeak interleaved, then its 16 sentences with
    a pause inside (voice tagged "+pause"). FIXED (tests/helpers/corpus.py) for the report, the
    tuning set (bench/tuning_set.py) when choosing a setting."""
    out: list[Utterance] = []
    for pair in zip(*(speech_set.sentences(engine) for engine in ENGINES), strict=True):
        out += [Utterance(c.text, c.audio, c.engine) for c in pair]
    for pair in zip(*(speech_set.paused(engine) for engine in ENGINES), strict=True):
        out += [Utterance(c.text, c.audio, c.engine + "+pause") for c in pair]
    return out


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    late: int = 0  # complete sentences whose final waited (merge, max_silence or end)
    complete: int = 0
    splits: int = 0
    merges: int = 0
    missing: int = 0
    reasons: collections.Counter = field(default_factory=collections.Counter)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    by_voice: dict[str, list[float]] = field(default_factory=dict)  # latencies per voice (a set's p50 mixes two)

    def add(self, other: Stats) -> None:
        self.latencies += other.latencies
        for name in ("late", "complete", "splits", "merges", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons += other.reasons
        self.pairs += other.pairs
        self.closes += other.closes
        self.probabilities += other.probabilities
        for voice, values in other.by_voice.items():
            self.by_voice.setdefault(voice, []).extend(values)


async def one_stream(url: str, utterances: list[Utterance], delay: float, config: dict) -> Stats:
    stats = Stats()
    await asyncio.sleep(delay)
    finals: list[tuple[float, dict]] = []
    spans: list[tuple[float, float]] = []  # each utterance's speech, stream seconds
    ends: list[float] = []  # wall time the last voiced sample went out
    async with websockets.connect(url + "/v1/asr/stream", max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", **config}))

        async def read() -> None:
            try:
                async for message in ws:
                    event = json.loads(message)
                    if event["type"] == "final":
                        finals.append((time.perf_counter(), event))
            except websockets.ConnectionClosed as exc:
                stats.closes.append(f"{exc.rcvd.code if exc.rcvd else '?'} {exc.rcvd.reason if exc.rcvd else ''}")

        reader = asyncio.create_task(read())
        step = int(CHUNK_S * RATE)
        t0 = time.perf_counter()
        sent = 0
        try:
            for utt in utterances:
                audio = concat(silence(LEAD_S), utt.audio, silence(PAUSE_S))
                speech_end = int(LEAD_S * RATE) + len(utt.audio)
                spans.append(((sent + LEAD_S * RATE) / RATE, (sent + speech_end) / RATE))
                base = sent
                for start in range(0, len(audio), step):
                    await ws.send(encode(audio[start : start + step], "pcm_s16le"))
                    if start < speech_end <= start + step:
                        ends.append(time.perf_counter())
                    sent = base + min(len(audio), start + step)
                    delay_s = t0 + sent / RATE - time.perf_counter()
                    if delay_s > 0:
                        await asyncio.sleep(delay_s)
            await ws.send(json.dumps({"type": "end"}))
        except websockets.ConnectionClosed:
            pass  # the server dropped us: what was sent and not answered counts as missing
        await asyncio.wait_for(reader, 120)
    # which utterances does each final cover (by overlap of its [start, end] with the speech spans)
    covered: list[list[int]] = []
    for _, event in finals:
        idx = [i for i, (a, b) in enumerate(spans) if event["start"] < b - 0.05 and event["end"] > a + 0.05]
        covered.append(idx)
        stats.reasons[event["end_of_turn"]["reason"]] += 1
        if event["end_of_turn"].get("probability") is not None:
            stats.probabilities.append(event["end_of_turn"]["probability"])
    stats.missing += len(utterances) - len(ends)  # never fully sent (the connection was dropped)
    for i, utt in enumerate(utterances[: len(ends)]):
        mine = [k for k, c in enumerate(covered) if i in c]
        if not mine:
            stats.missing += 1
            continue
        if len(mine) > 1:
            stats.splits += 1
        first = mine[0]
        complete = "+pause" not in utt.voice
        stats.complete += complete
        nxt = ends[i + 1] if i + 1 < len(ends) else float("inf")
        arrived = finals[mine[-1]][0]
        sole = covered[mine[-1]] == [i]
        waited = finals[mine[-1]][1]["end_of_turn"]["reason"] in WAITED
        if complete and (not sole or arrived >= nxt or waited):
            stats.late += 1
        if sole and arrived < nxt:
            stats.latencies.append(arrived - ends[i])
            stats.by_voice.setdefault(utt.voice, []).append(arrived - ends[i])
        del first
    stats.merges = sum(1 for c in covered if len(c) > 1)
    stats.pairs.append((" ".join(u.text for u in utterances), " ".join(e["text"] for _, e in finals)))
    return stats


async def run_level(url: str, streams: int, utterances: list[Utterance], per_stream: int, config: dict) -> Stats:
    rng = np.random.default_rng(streams)
    jobs = []
    for i in range(streams):
        order = [utterances[(i * 3 + k) % len(utterances)] for k in range(per_stream)]
        jobs.append(one_stream(url, order, float(rng.uniform(0, 1.5)), config))
    total = Stats()
    for stats in await asyncio.gather(*jobs):
        total.add(stats)
    return total


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rest_wer(url: str, utterances: list[Utterance]) -> float:
    pairs = []
    with httpx.Client(timeout=120) as client:
        for utt in utterances:
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(encode(concat(silence(0.3), utt.audio, silence(0.3)), "pcm_s16le"))
            r = client.post(
                url + "/v1/audio/transcriptions",
                files={"file": ("a.wav", buf.getvalue(), "audio/wav")},
                data={"model": "whisper-1"},
            )
            r.raise_for_status()
            pairs.append((utt.text, r.json()["text"]))
    return corpus_wer(pairs)


GUESSES = {"final": "voice_asr_speculative_finals_total", "turn": "voice_asr_speculative_turn_checks_total"}
OUTCOMES = ("started", "used", "redone", "dropped")


def guess_counts(service: ServiceProcess) -> dict[str, collections.Counter]:
    """The service's early-guess counters (endpointing.py) by outcome: the early final, Smart Turn's
    early answer."""
    return {
        what: collections.Counter({o: int(metric(service, f'{name}{{outcome="{o}"}}')) for o in OUTCOMES})
        for what, name in GUESSES.items()
    }


def summary(stats: Stats, audio_s: float, cpu_s: float, guesses: dict | None = None) -> dict:
    lat = stats.latencies
    return {
        "guesses": {what: dict(c) for what, c in (guesses or {}).items()},
        "p50_ms": round(median(lat) * 1e3) if lat else None,
        "p95_ms": round(pct(lat, 0.95) * 1e3) if lat else None,
        "max_ms": round(max(lat) * 1e3) if lat else None,
        "n": len(lat),
        "p50_by_voice_ms": {voice: round(median(v) * 1e3) for voice, v in sorted(stats.by_voice.items())},
        "late": stats.late,
        "complete": stats.complete,
        "splits": stats.splits,
        "merges": stats.merges,
        "missing": stats.missing,
        "reasons": dict(stats.reasons),
        "wer": round(corpus_wer(stats.pairs) * 100, 2),
        "cpu_per_audio_s": round(cpu_s / audio_s, 3) if audio_s else None,
        "closes": stats.closes,
    }


class Elsewhere(ServiceProcess):
    """The service from another checkout (`--repo`, e.g. `git archive` of the commit before a
    change), so before and after run under the same conditions, one after the other."""

    cwd = "."

    def start(self, wait: str = "/ready", timeout: float = 180.0) -> ServiceProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(wait, timeout)
        return self


def run_live(
    env: dict[str, str],
    levels: list[int],
    per_stream: int = 8,
    rest: bool = True,
    label: str = "live",
    repo: str | None = None,
    speech_set: str = "fixed",
) -> dict:
    utterances = corpus(SETS[speech_set])
    base_env = {
        "ASR_MODEL": MODEL,
        "ASR_TEMPERATURES": "0.0",
        "MAX_SESSIONS": "64",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    config = {"turn_detection": {"mode": "smart_turn", "stop_secs": 0.2}}
    service = (Elsewhere if repo else ServiceProcess)("asr", env=base_env, label=f"bench-{label}")
    if repo:
        service.cwd = repo
    service.start()
    out: dict = {"env": env, "set": speech_set, "levels": {}}
    try:
        if rest:
            out["rest_wer"] = round(rest_wer(service.url, utterances) * 100, 2)
        for level in levels:
            n = len(utterances) if level == 1 else per_stream
            cpu0, guesses0 = cpu_seconds(service.proc.pid), guess_counts(service)
            stats = asyncio.run(run_level(service.ws_url, level, utterances, n, config))
            cpu = cpu_seconds(service.proc.pid) - cpu0
            guesses = {what: c - guesses0[what] for what, c in guess_counts(service).items()}
            order = [utterances[k % len(utterances)] for k in range(n)]
            audio_s = level * sum(LEAD_S + len(u.audio) / RATE + PAUSE_S for u in order)
            out["levels"][level] = summary(stats, audio_s, cpu, guesses)
            print(f"[bench asr_live {label}] {level} streams: {json.dumps(out['levels'][level])}", flush=True)
    finally:
        service.stop()
    out["load"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--per-stream", type=int, default=8)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--label", default="live")
    parser.add_argument("--no-rest", action="store_true")
    parser.add_argument("--repo", help="run the service from this checkout (before/after comparisons)")
    parser.add_argument("--set", default="fixed", choices=sorted(SETS), help="speech set (tuning: choosing settings)")
    parser.add_argument("--out")
    args = parser.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    levels = [int(x) for x in args.levels.split(",")]
    result = run_live(env, levels, args.per_stream, not args.no_rest, args.label, args.repo, args.set)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()


CONFIGS = {
    "ASR_BATCH_SIZE=8 (batching on; the auto default on CUDA)": {"ASR_BATCH_SIZE": "8"},
    "ASR_BATCH_SIZE=1 (batching off; the auto default on CPU)": {"ASR_BATCH_SIZE": "1"},
}


def guess_cell(counts: dict) -> str:
    if not counts.get("started"):
        return "0"
    return "{} / {} / {} of {}".format(*(counts.get(k, 0) for k in ("used", "redone", "dropped", "started")))


def report_section(report, levels: tuple[int, ...] = (1, 4, 8, 16)) -> dict:
    """The `make bench` part: the live-stream table, batching on and off (bench/asr.py calls it)."""
    results = {
        name: run_live(env, list(levels), label="bench-live-" + (env.get("ASR_BATCH_SIZE") or "8"))
        for name, env in CONFIGS.items()
    }
    load = os.getloadavg()
    report.section(
        "ASR: live streams with the real model (issue 11)",
        f"`{MODEL}` (real Whisper tiny.en, int8 on CPU), ASR_TEMPERATURES=0.0, the project's speech set "
        "(tests/helpers/corpus.py: 40 Piper and espeak sentences + 16 with a pause inside), streamed at "
        f"real-time pace in {CHUNK_S * 1000:.0f} ms frames, {LEAD_S} s of silence before and {PAUSE_S} s after "
        "each utterance; smart_turn, stop_secs 0.2. One stream: all 56 utterances (REST is scored on the same "
        "clips); N streams: 8 each, starts staggered over 1.5 s. Latency = last voiced frame sent → its final "
        "received. *late* = complete "
        "sentences whose final came only with the next utterance, `end` or max_silence_secs (merges and waits); "
        "*splits* = utterances answered by more than one final; *merges* = finals covering two utterances; "
        "WER over all finals of each stream; CPU = the service process's CPU seconds per second of audio. "
        f"The machine is shared with other work (load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"on {os.cpu_count()} cores at the end): compare within one run.",
    )
    rows = []
    for name, result in results.items():
        for level, st in result["levels"].items():
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(st["reasons"].items()))
            early = st.get("guesses", {})
            rows.append(
                [
                    name,
                    level,
                    st["p50_ms"],
                    st["p95_ms"],
                    f"{st['late']}/{st['complete']}",
                    st["splits"],
                    st["merges"],
                    st["missing"],
                    st["wer"],
                    st["cpu_per_audio_s"],
                    reasons,
                    guess_cell(early.get("final", {})),
                    guess_cell(early.get("turn", {})),
                ]
            )
    report.table(
        [
            "config",
            "streams",
            "p50 (ms)",
            "p95 (ms)",
            "late",
            "splits",
            "merges",
            "missing",
            "stream WER %",
            "CPU s / audio s",
            "end-of-turn reasons",
            "speculative finals: used / redone / dropped of started",
            "early Smart Turn answers: used / redone / dropped of started",
        ],
        rows,
    )
    report.text(
        "*Speculative finals* = final transcriptions started before the turn ended: early "
        "(ASR_SPECULATE_SECS into the silence, while the engine is idle) or at the first Smart Turn check; "
        "*early Smart Turn answers* = the first check's answer computed with an early final "
        "(services/asr/endpointing.py). *used*: it became the final (the check's answer); *redone*: a sound "
        "came after what it heard (the quiet tail of a word), so the turn's real audio was decoded (asked) "
        "again, one more call; *dropped*: speech resumed. Under load the engine is rarely idle, so the early "
        "answers stop by themselves."
    )
    rest = ", ".join(f"{name}: {r.get('rest_wer')} %" for name, r in results.items())
    report.text(f"REST WER on the same clips (one file per utterance): {rest}.")
    return results
