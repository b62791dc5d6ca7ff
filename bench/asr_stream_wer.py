"""Stream WER by setting: a whole speech set through the session core as fast as it goes.

`python -m bench.asr_stream_wer [--set tuning] [--show] CONFIG ...`, where each CONFIG is
`K=V[,K=V...]` (ASR settings; `-` = the defaults) or a bare number, short for
`ASR_FINAL_WINDOW_PAD_SECS=<number>` (-1 = Whisper's 30 s window). No server, no real-time pacing:
turn decisions are on the sample clock, so the turns are the ones a live stream gets; only the
settings change between runs. `--set tuning` (bench/tuning_set.py) is the set settings are chosen
on; the fixed set (the default) is what the tests score. `--show` prints each utterance whose
words differ from the reference, with the finals that covered it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import numpy as np

from bench.asr_live import LEAD_S, MODEL, PAUSE_S, RATE, Utterance, corpus
from bench.tuning_set import SETS
from services.asr import config as asr_config
from services.asr.engines import Engines
from services.common.protocol.asr import Final, TurnDetection
from tests.helpers.core_stream import core_finals
from tests.helpers.speech import concat, silence
from tests.helpers.wer import corpus_wer, edit_distance, words


async def stream_finals(engines: Engines, audio) -> list[Final]:
    return await core_finals(engines, audio, TurnDetection(mode="smart_turn", stop_secs=0.2), step=3200)


def settings(config: str) -> dict[str, str]:
    if config in ("", "-"):
        return {}
    if "=" not in config:
        return {"ASR_FINAL_WINDOW_PAD_SECS": str(float(config))}
    return dict(kv.split("=", 1) for kv in config.split(","))


def layout(utterances: list[Utterance]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The utterances as one stream (LEAD_S of silence before each, PAUSE_S after) and each one's
    speech span in stream seconds."""
    parts, spans, at = [], [], 0.0
    for u in utterances:
        parts.append(concat(silence(LEAD_S), u.audio, silence(PAUSE_S)))
        spans.append((at + LEAD_S, at + LEAD_S + len(u.audio) / RATE))
        at = spans[-1][1] + PAUSE_S
    return concat(*parts), spans


def per_utterance(utterances, spans, finals: list[Final]) -> list[tuple[Utterance, str, int]]:
    """Each utterance, the text of the finals overlapping its speech, and their word errors."""
    out = []
    for u, (start, end) in zip(utterances, spans, strict=True):
        text = " ".join(f.text for f in finals if f.start < end - 0.05 and f.end > start + 0.05)
        out.append((u, text, edit_distance(words(u.text), words(text))))
    return out


async def measure(env_settings: dict[str, str], utterances: list[Utterance], show: bool) -> tuple[float, float, int]:
    env = {**os.environ, "ASR_MODEL": MODEL, "ASR_TEMPERATURES": "0.0", **env_settings}
    engines = Engines(asr_config.load(env))
    await asyncio.to_thread(engines.load)
    engines.transcriber.start()
    audio, spans = layout(utterances)
    started = time.perf_counter()
    finals = await stream_finals(engines, audio)
    took = time.perf_counter() - started
    await engines.transcriber.stop()
    engines.shutdown()
    if show:
        for u, text, errors in per_utterance(utterances, spans, finals):
            if errors:
                print(f"  {errors} [{u.voice}] {u.text!r} -> {text!r}")
    ref = " ".join(u.text for u in utterances)
    return corpus_wer([(ref, " ".join(f.text for f in finals))]), took, len(finals)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="*", default=["-1", "1", "16"])
    parser.add_argument("--set", default="fixed", choices=sorted(SETS))
    parser.add_argument("--show", action="store_true", help="print the utterances with word errors")
    args = parser.parse_args()
    utterances = corpus(SETS[args.set])
    print(f"set {args.set}: {len(utterances)} utterances")
    print("| settings | stream WER (%) | finals | wall time (s) |\n|---|---|---|---|")
    for config in args.configs:
        wer, took, n = asyncio.run(measure(settings(config), utterances, args.show))
        print(f"| {config} | {wer * 100:.2f} | {n} | {took:.0f} |", flush=True)


if __name__ == "__main__":
    main()
