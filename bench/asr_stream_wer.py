"""Stream WER by final window: the whole corpus through the session core as fast as it goes.

`python -m bench.asr_stream_wer [PAD ...]` (ASR_FINAL_WINDOW_PAD_SECS values; -1 = Whisper's 30 s
window). No server, no real-time pacing: turn decisions are on the sample clock, so the turns are
the ones a live stream gets; only the final window changes between runs. Used to choose the
default of ASR_FINAL_WINDOW_PAD_SECS (docs/asr.md, "Turn taking and latency").
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from bench.asr_live import LEAD_S, MODEL, PAUSE_S, corpus
from services.asr import config as asr_config
from services.asr.engines import Engines
from services.common.protocol.asr import Final, TurnDetection
from tests.helpers.core_stream import core_finals
from tests.helpers.speech import concat, silence
from tests.helpers.wer import corpus_wer


async def stream_finals(engines: Engines, audio) -> list[Final]:
    return await core_finals(engines, audio, TurnDetection(mode="smart_turn", stop_secs=0.2), step=3200)


async def measure(pad: float) -> tuple[float, float, int]:
    env = {**os.environ, "ASR_MODEL": MODEL, "ASR_TEMPERATURES": "0.0", "ASR_FINAL_WINDOW_PAD_SECS": str(pad)}
    engines = Engines(asr_config.load(env))
    await asyncio.to_thread(engines.load)
    engines.transcriber.start()
    utterances = corpus()
    audio = concat(*[concat(silence(LEAD_S), u.audio, silence(PAUSE_S)) for u in utterances])
    started = time.perf_counter()
    finals = await stream_finals(engines, audio)
    took = time.perf_counter() - started
    await engines.transcriber.stop()
    engines.shutdown()
    ref = " ".join(u.text for u in utterances)
    return corpus_wer([(ref, " ".join(f.text for f in finals))]), took, len(finals)


def main() -> None:
    pads = [float(x) for x in sys.argv[1:]] or [-1.0, 1.0, 16.0]
    print("| final window | stream WER (%) | finals | wall time (s) |\n|---|---|---|---|")
    for pad in pads:
        wer, took, n = asyncio.run(measure(pad))
        name = "30 s (Whisper's)" if pad < 0 else f"turn + {pad:g} s (≥ ASR_MIN_WINDOW_SECS)"
        print(f"| {name} | {wer * 100:.2f} | {n} | {took:.0f} |", flush=True)


if __name__ == "__main__":
    main()
