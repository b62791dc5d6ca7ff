"""How much padding does a short-window Whisper decode need to hear what the 30 s window hears?

`python -m bench.asr_window [--pads 0,0.25,0.5,1,2,4]`: every clip of the project's corpus
(tests/helpers/corpus.py: sentences and paused sentences, Piper and espeak), laid out as a stream
final holds it (0.3 s pre-speech pad, the speech, 0.2 s of silence), decoded by the raw engine in
Whisper's 30 s window and in short windows of clip + pad. Reports WER against the texts, words
that differ from the 30 s decode, and engine time. The chosen defaults of ASR_PARTIAL_WINDOW_PAD_SECS
and ASR_FINAL_WINDOW_PAD_SECS come from this table (docs/asr.md, "Turn taking and latency").
"""

from __future__ import annotations

import argparse
import time

from bench.report import median
from services.asr import config as asr_config
from services.asr.transcriber import Request
from services.asr.whisper import WhisperEngine, window_frames
from tests.helpers import corpus
from tests.helpers.speech import concat, silence
from tests.helpers.wer import corpus_wer

MODEL = "models/whisper-tiny.en"


def clips() -> list[tuple[str, object]]:
    out = []
    for engine in corpus.ENGINES:
        for clip in corpus.sentences(engine) + corpus.paused(engine):
            out.append((clip.text, concat(silence(0.3), clip.audio, silence(0.2))))
    return out


def measure(pads: list[float], word_timestamps: bool = True) -> dict:
    config = asr_config.load({"ASR_MODEL": MODEL, "ASR_TEMPERATURES": "0.0"})
    engine = WhisperEngine(config)
    engine.load()
    items = clips()
    rows = {}

    def run(pad: float | None) -> tuple[list[str], list[float]]:
        hyps, times = [], []
        for _, audio in items:
            request = Request(audio, "final", language="en", word_timestamps=word_timestamps)
            started = time.perf_counter()
            if pad is None:
                segments, info, duration = engine._start(request)
                result = engine.transcript(list(segments), info, duration)
            else:
                assert pad >= 30 or window_frames(len(audio) / 16000, pad, config.min_window_s)
                original = engine.pad_s
                engine.pad_s = lambda _r, pad=pad: pad
                try:
                    (result,) = engine.run_batch([request])
                finally:
                    engine.pad_s = original
            times.append(time.perf_counter() - started)
            hyps.append(result.text)
        return hyps, times

    raw, raw_times = run(None)
    refs = [text for text, _ in items]
    rows["30 s window"] = (corpus_wer(list(zip(refs, raw, strict=True))), 0.0, median(raw_times))
    for pad in pads:
        hyps, times = run(pad)
        vs_raw = corpus_wer(list(zip(raw, hyps, strict=True)))
        name = "batched path, 30 s" if pad >= 30 else f"clip + {pad:g} s"
        rows[name] = (corpus_wer(list(zip(refs, hyps, strict=True))), vs_raw, median(times))
    return {"clips": len(items), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pads", default="0,0.25,0.5,1,2,4")
    args = parser.parse_args()
    result = measure([float(x) for x in args.pads.split(",")])
    print(f"{result['clips']} clips (corpus sentences + paused, Piper + espeak), final layout, word timestamps on")
    print("| window | WER vs text (%) | word changes vs 30 s window (%) | median engine time (ms) |")
    print("|---|---|---|---|")
    for name, (wer, vs_raw, t) in result["rows"].items():
        print(f"| {name} | {wer * 100:.2f} | {vs_raw * 100:.2f} | {t * 1000:.0f} |")


if __name__ == "__main__":
    main()
