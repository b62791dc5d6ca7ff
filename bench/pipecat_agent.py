"""Agent benchmark against pipecat 1.14: end of user speech → first agent audio, same measurement.

The same microphone as bench/agent.py (its configurations(): the question in the Piper voice and
in espeak, LEAD_S of silence before it, 20 ms frames at real-time pace, silence nonstop between
turns), the same fake Claude (tests/helpers/fake_claude.py, FakeClaude(REPLY, TTFT 300 ms, 20 ms
per token), the real Anthropic streaming protocol) and the same definition of voice-to-voice:
the last voiced frame sent → the first agent audio frame received, both on this process's
monotonic clock. The agent is a pipecat bot (bench/pipecat/server.py, a subprocess in its own
venv `.venv-pipecat`) instead of our ASR + TTS + orchestrator: WebSocket server transport with raw
PCM16, SileroVADAnalyzer stop_secs 0.2, LocalSmartTurnAnalyzerV3 on models/smart-turn-v3.2-cpu.onnx
(or a plain VAD stop in the vad column), WhisperSTTService on models/whisper-tiny.en (int8 CPU,
2 threads, beam 1, temperature 0 — our ASR's decode), AnthropicLLMService on the fake Claude, and
espeak-ng (a minimal TTSService subclass) or pipecat's PiperTTSService on models/piper.
One bot process per configuration, with one warm-up turn before the timed ones.

The same in both: question audio, frames, pace and clock; the fake Claude and its timing; the
Whisper model files, int8, 2 CPU threads, beam 1, temperature 0 (faster-whisper 1.2.1,
CTranslate2 4.8.5); the Smart Turn v3.2 file (byte-identical to pipecat's bundled one);
onnxruntime 1.31.1; VAD stop_secs 0.2; espeak-ng en-us at 175 wpm read in ~50 ms chunks.
What differs, each stack as it is built: pipecat runs in one process, ours is orchestrator +
ASR + TTS services; pipecat decodes each VAD segment once after the VAD stop with faster-whisper's
transcribe() (30 s window, no partials), ours streams; pipecat asks Smart Turn once at the VAD
stop and, when it says incomplete, waits for SmartTurnParams.stop_secs (3 s), ours re-checks and
reads the transcript; when a transcript starts a turn on its own (after a split) pipecat waits
its STT timeout (WhisperSTTService sets no ttfs_p99_latency: pipecat's 1.0 s default); Silero is
pipecat's bundled silero_vad.onnx with its VADParams defaults (confidence 0.7, start_secs 0.2,
min_volume 0.6), ours faster-whisper's silero_vad_v6.onnx; anthropic 1.17.0 (pipecat pins <2)
against ours 2.11.0; pipecat's Piper column is its PiperTTSService (onnxruntime default threads,
piper's default synthesis), ours TTS_PIPER_THREADS; pipecat audio leaves in 40 ms chunks, RTVI
off (no RTVI client). A turn pipecat answers while the question still plays (it took a pause
for the end) is a cut-in: that audio is not the answer, the turn's v2v is its later answer.

    bash bench/pipecat/setup.sh                       # once: .venv-pipecat (PyPI only, pinned)
    .venv/bin/python -m bench.pipecat_agent           # 8 turns per column, espeak and piper TTS
    .venv/bin/python -m bench.pipecat_agent --turns 3 --engines espeak --with-ours
                                                      # ours (bench.agent) then pipecat, one run

Prints one `[bench pipecat] …` line per column (and `[bench agent] …` lines for ours with
--with-ours) and writes bench/out/pipecat_agent.json. `make bench` runs it as the
`pipecat_agent` part after `agent`, and skips it with a message when .venv-pipecat is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect

from bench import agent as ours
from bench.report import OUT, Report, median, pct
from tests.helpers.fake_claude import FakeClaude
from tests.helpers.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv-pipecat" / "bin" / "python"
SERVER = ROOT / "bench" / "pipecat" / "server.py"
START_TIMEOUT_S = 180
# stages the bot reports (CLOCK_MONOTONIC, shared with this process), in pipeline order
STAGES = [
    ("vad_stopped", "VAD stop (Silero, stop_secs)"),
    ("transcription", "Whisper transcript (segment decoded after the VAD stop)"),
    ("turn_end", "turn decision (UserStoppedSpeaking)"),
    ("llm_first_token", "LLM first token"),
    ("tts_first_audio", "first TTS audio"),
    ("bot_started", "output transport starts speaking"),
]


def available() -> str | None:
    """None when the pipecat venv is there, else why the part is skipped."""
    if not VENV_PYTHON.is_file():
        return f"{VENV_PYTHON.relative_to(ROOT)} is missing (make it with: bash bench/pipecat/setup.sh)"
    return None


class PipecatBot:
    """bench/pipecat/server.py in .venv-pipecat on a free 127.0.0.1 port; its log goes to
    tests/artifacts/<label>.log."""

    def __init__(self, label: str, claude_url: str, tts: str, turn: str, stop_secs: float) -> None:
        self.port = free_port()
        self.args = [
            str(VENV_PYTHON),
            str(SERVER),
            f"--port={self.port}",
            f"--claude-url={claude_url}",
            f"--tts={tts}",
            f"--turn={turn}",
            f"--stop-secs={stop_secs}",
            f"--threads={ours.ASR_THREADS}",
        ]
        self.log_path = ROOT / "tests" / "artifacts" / f"{label}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> PipecatBot:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, cwd=ROOT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        while True:  # the bot prints READY once its WebSocket server listens
            line = self.proc.stdout.readline().decode(errors="replace")
            if line.startswith("READY"):
                return self
            if not line or time.monotonic() > deadline:
                self.__exit__()
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the pipecat bot did not start; log tail:\n{tail}")

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


async def _turns(url: str, speech: np.ndarray, n: int) -> list[dict]:
    """One session, `n` turns, played like bench.agent's microphone: 20 ms raw PCM16 frames at
    real-time pace, nonstop — the question, silence until the bot says the turn is over, 300 ms
    more, the next question."""
    results: list[dict] = []
    mic = ours.Microphone.of(speech)
    async with connect(url, max_size=2**22) as ws:
        turn_over = asyncio.Event()
        state: dict = {}

        async def microphone() -> None:
            await mic.play(ws.send, lambda: len(results) < n, turn_over, state)

        async def speaker() -> None:
            while len(results) < n:
                message = await ws.recv()
                if isinstance(message, bytes):
                    if "speech_end_at" not in state:
                        state["cut_in"] = True  # an answer to part of the question, over the user
                    elif "first_audio_at" not in state:
                        state["first_audio_at"] = time.monotonic()
                    continue
                done = json.loads(message)
                if done.get("type") != "done" or "speech_end_at" not in state:
                    continue  # a cut-in answer ended while the question was still playing
                if "first_audio_at" in state:
                    results.append(_result(state, done))
                turn_over.set()

        playing = asyncio.create_task(microphone())  # not `mic`: microphone() reads that name
        try:
            await asyncio.wait_for(speaker(), 60 * n)
        finally:
            playing.cancel()
    return results


def _result(state: dict, done: dict) -> dict:
    """One turn: v2v on this clock, the bot's stage times in ms after the end of speech (the
    user-side ones: the last before the answer), its turn decisions and Smart Turn verdicts."""
    end = state["speech_end_at"]
    events, answer = done["events"], done["answer"]
    stages = {name: (times[-1] - end) * 1000 for name, times in events.items() if times and name != "turn_start"}
    stages.update({name: (at - end) * 1000 for name, at in answer.items()})
    return {
        "voice_to_voice": state["first_audio_at"] - end,
        "stages_ms": stages,
        "turn_ends": len(events.get("turn_end", [])),
        "smart_turn": [
            {"ms": (v["at"] - end) * 1000, "complete": v["complete"], "p": v["p"]} for v in done["smart_turn"]
        ],
        "cut_in": state.get("cut_in", False),
    }


def measure_all(engines: tuple[str, ...], turns: int = ours.TURNS) -> dict[str, list[dict]]:
    """{column name: per-turn results}, column names as bench.agent's, one bot per column."""
    measured: dict[str, list[dict]] = {}
    configs = ours.configurations()
    with FakeClaude(reply=ours.REPLY, ttft_s=ours.TTFT_S, token_delay_s=0.02) as claude:
        for engine in engines:
            for i, (name, (speech, td)) in enumerate(configs.items()):
                label = f"bench-pipecat-{engine}-{i}-{td['mode']}"  # one log per column
                with PipecatBot(label, claude.url, engine, td["mode"], td["stop_secs"]) as bot:
                    asyncio.run(_turns(bot.url, speech, 1))  # warm-up: first inference, connections
                    measured[f"{engine} TTS, {name}"] = asyncio.run(_turns(bot.url, speech, turns))
    return measured


def _summary(results: list[dict]) -> dict:
    v2v = [r["voice_to_voice"] * 1000 for r in results]
    stages = {key: median([r["stages_ms"][key] for r in results if key in r["stages_ms"]]) for key, _label in STAGES}
    return {
        "turns": len(results),
        "v2v_median_ms": median(v2v),
        "v2v_p95_ms": pct(v2v, 0.95),
        "v2v_ms": v2v,
        "stage_median_ms_after_speech_end": stages,
        # turns the bot decided more than once (it took a pause for the end), answers it began
        # while the question was still playing, Smart Turn "incomplete" after the end of speech
        "split_turns": sum(r["turn_ends"] > 1 for r in results),
        "cut_ins": sum(r["cut_in"] for r in results),
        "smart_turn_incomplete": sum(not v["complete"] for r in results for v in r["smart_turn"] if v["ms"] > 0),
        "results": results,
    }


def _line(name: str, summary: dict) -> str:
    stages = ", ".join(f"{key} {summary['stage_median_ms_after_speech_end'][key]:.0f}" for key, _label in STAGES)
    return (
        f"[bench pipecat] {name}: v2v median {summary['v2v_median_ms']:.0f} ms "
        f"p95 {summary['v2v_p95_ms']:.0f} ({summary['turns']} turns; split {summary['split_turns']}, "
        f"cut-in {summary['cut_ins']}, Smart Turn incomplete {summary['smart_turn_incomplete']}); "
        f"ms after speech end: {stages}"
    )


def _write_json(summaries: dict[str, dict], extra: dict | None = None) -> Path:
    import importlib.metadata as md

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "pipecat_agent.json"
    pins = (ROOT / "bench" / "pipecat" / "requirements.txt").read_text().split()
    body = {
        "agent": "pipecat",
        "pipecat": next((p.split("==")[1] for p in pins if p.split("==")[0].split("[")[0] == "pipecat-ai"), "?"),
        "client_websockets": md.version("websockets"),
        "ttft_ms": ours.TTFT_S * 1000,
        "load_average": os.getloadavg(),
        "columns": summaries,
        **(extra or {}),
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def run(report: Report, engines: tuple[str, ...] = ours.TTS_ENGINES) -> None:
    """The `make bench` part: skipped, with its reason in the report, without .venv-pipecat."""
    missing = available()
    title = "Agent, side by side: a pipecat 1.14 bot, same microphone and fake Claude"
    if missing:
        print(f"[bench pipecat] skipped: {missing}")
        report.section(title, f"Skipped: {missing}.")
        return
    measured = measure_all(engines)
    summaries = {name: _summary(results) for name, results in measured.items()}
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    report.section(
        title,
        f"{ours.TURNS} turns per column, one pipecat bot process per column (bench/pipecat/server.py), the same "
        "client as the agent table above (same question audio, frames and pace; voice-to-voice from the last "
        "voiced frame sent to the first agent audio frame received) and the same fake Claude. Stage columns: "
        "median ms after the end of speech, from the bot's own CLOCK_MONOTONIC stage times. Pipecat decodes "
        "each VAD segment once after the VAD stop (no partials) and waits 3 s when Smart Turn says incomplete; "
        "the other differences of the two setups are listed in bench/pipecat_agent.py. "
        f"Load average at the end (1/5/15 min): {load}.",
    )
    header = ["column", "v2v median", "p95", "split / cut-in / Smart Turn incomplete"]
    header += [label for _key, label in STAGES]
    rows: list[list[object]] = []
    for name, s in summaries.items():
        stages = s["stage_median_ms_after_speech_end"]
        counts = f"{s['split_turns']} / {s['cut_ins']} / {s['smart_turn_incomplete']}"
        rows.append([name, s["v2v_median_ms"], s["v2v_p95_ms"], counts] + [stages[key] for key, _label in STAGES])
        print(_line(name, s))
    report.table(header, rows)
    _write_json(summaries)


def main() -> None:
    """`python -m bench.pipecat_agent [--turns N] [--engines espeak,piper] [--with-ours]`."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--engines", default=",".join(ours.TTS_ENGINES))
    parser.add_argument("--turns", type=int, default=ours.TURNS)
    parser.add_argument("--with-ours", action="store_true", help="run bench.agent's columns first, same turns")
    args = parser.parse_args()
    missing = available()
    if missing:
        sys.exit(f"[bench pipecat] {missing}")
    engines = tuple(args.engines.split(","))
    extra: dict = {}
    if args.with_ours:
        ours.TURNS = args.turns  # bench.agent reads it per measurement
        measured_ours = ours.measure_all(engines)
        extra["ours"] = {}
        for name, m in measured_ours.items():
            v2v = ours._rows(m)[0][1]
            extra["ours"][name] = {"turns": len(v2v), "v2v_median_ms": median(v2v), "v2v_p95_ms": pct(v2v, 0.95)}
            print(f"[bench agent] {name}: v2v median {median(v2v):.0f} ms p95 {pct(v2v, 0.95):.0f} ({len(v2v)} turns)")
    measured = measure_all(engines, args.turns)
    summaries = {name: _summary(results) for name, results in measured.items()}
    for name, s in summaries.items():
        print(_line(name, s))
    print(f"[bench pipecat] json: {_write_json(summaries, extra)}")


if __name__ == "__main__":
    main()
