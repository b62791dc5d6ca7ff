"""ASR words beside the latency numbers: WER of raw faster-whisper, the service's REST endpoint and
its streaming WebSocket on the same audio, the project's fixed speech set (tests/helpers/corpus.py):
single sentences (Piper and espeak halves), sentences with a pause in the middle, multi-turn
streams. Also how the stream cut the audio into turns: splits, merges, end-of-turn reasons.

Streams are sent as fast as the socket takes them: the service's turn taking runs on the sample
clock, so the events and words are those of a real-time stream (checked: the same finals, paced or
not); latency is measured in bench/asr.py, not here.
"""

from __future__ import annotations

import asyncio
import collections
import time

import httpx

from bench.report import Report
from services.asr import config as asr_config
from services.common.audio import wav_bytes
from tests.asr.streaming import StreamResult, stream_audio
from tests.helpers import corpus, raw_asr
from tests.helpers.procs import ServiceProcess
from tests.helpers.speech import concat, silence
from tests.helpers.wer import corpus_wer

ENV = {"ASR_TEMPERATURES": "0.0", "ASR_BEAM_SIZE": "1", "MAX_SESSIONS": "64", "LOG_LEVEL": "WARNING"}
PAD_S = 0.3  # silence around a clip in a file
CHUNK_S = 0.5
LEAD_S, TAIL_S = 0.5, 1.5  # around a paused sentence streamed alone


def rest_texts(url: str, clips) -> list[str]:
    out = []
    with httpx.Client(base_url=url, timeout=300) as http:
        for clip in clips:
            files = {"file": ("clip.wav", wav_bytes(clip.padded(PAD_S, PAD_S), corpus.RATE), "audio/wav")}
            response = http.post("/v1/audio/transcriptions", files=files, data={"response_format": "json"})
            response.raise_for_status()
            out.append(response.json()["text"])
    return out


async def streamed(url: str, audios) -> list[StreamResult]:
    return list(
        await asyncio.gather(*(stream_audio(url, a, config={}, chunk_s=CHUNK_S, speed=0, timeout=600) for a in audios))
    )


def finals_text(result: StreamResult) -> str:
    return " ".join(f["text"] for f in result.finals)


def measure(service: ServiceProcess, model, config) -> list[dict]:
    """One row per (set, engine): WERs of the three paths and the stream's turns."""
    rows = []
    for engine in corpus.ENGINES:
        sentences, paused, streams = corpus.sentences(engine), corpus.paused(engine), corpus.streams(engine)
        t0 = time.perf_counter()
        raw = {name: [raw_asr.text(model, c.padded(PAD_S, PAD_S), config) for c in clips]
               for name, clips in (("sentences", sentences), ("paused", paused))}  # fmt: skip
        raw_s = time.perf_counter() - t0
        rest = {"sentences": rest_texts(service.url, sentences), "paused": rest_texts(service.url, paused)}
        multi = asyncio.run(streamed(service.ws_url, [s.audio for s in streams]))
        alone = asyncio.run(
            streamed(service.ws_url, [concat(silence(LEAD_S), c.audio, silence(TAIL_S)) for c in paused])
        )
        audio_s = sum(c.seconds for c in sentences + paused)
        for name, clips, results in (("sentences", sentences, multi), ("paused", paused, alone)):
            if name == "sentences":  # 4 multi-turn streams of 5 sentences each
                refs = [s.text for s in streams]
                units = len(sentences)
            else:  # each paused sentence in its own stream: one turn expected
                refs = [c.text for c in clips]
                units = len(clips)
            finals = [f for r in results for f in r.finals]
            rows.append(
                {
                    "set": name,
                    "engine": engine,
                    "utterances": units,
                    "words": sum(len(c.text.split()) for c in clips),
                    "raw": corpus_wer(zip([c.text for c in clips], raw[name], strict=True)),
                    "rest": corpus_wer(zip([c.text for c in clips], rest[name], strict=True)),
                    "stream": corpus_wer(zip(refs, [finals_text(r) for r in results], strict=True)),
                    "finals": len(finals),
                    "split": sum(max(0, len(r.finals) - 1) for r in results) if name == "paused" else None,
                    "reasons": collections.Counter(f["end_of_turn"]["reason"] for f in finals),
                    "errors": sum(len(r.of("error")) for r in results),
                }
            )
        print(
            f"[bench asr-wer] {engine}: raw {raw_s:.1f} s for {audio_s:.1f} s of audio; "
            + "; ".join(
                f"{r['set']} raw {r['raw']:.2%} rest {r['rest']:.2%} stream {r['stream']:.2%}"
                for r in rows
                if r["engine"] == engine
            ),  # fmt: skip
            flush=True,
        )
    return rows


def run(report: Report) -> None:
    config = asr_config.load(ENV)
    model = raw_asr.load(config)
    service = ServiceProcess("asr", env=ENV, label="bench-asr-wer").start()
    try:
        rows = measure(service, model, config)
    finally:
        service.stop()
    report.section(
        "ASR words (WER): raw faster-whisper vs the service",
        f"Model `{config.model_name}` (Whisper tiny.en, real weights, CTranslate2 int8 on CPU), beam "
        f"{config.beam_size}, temperature {config.temperatures[0]:g} (no fallback), "
        f"`ASR_CPU_THREADS={config.cpu_threads}`, the service's default turn detection (Smart Turn v3.2 "
        "after 0.2 s of silence, 3 s at most). The project's fixed speech set (tests/helpers/corpus.py, not "
        "used for tuning): 20 sentences in the Piper voice en_US-joe-medium and 20 others in espeak-ng; 8 "
        "sentences per engine with a 0.4–0.8 s pause at a word boundary. **raw** = `WhisperModel.transcribe` "
        f"on each clip with {PAD_S} s of silence around it; **REST** = the same clip uploaded as a WAV to "
        "`/v1/audio/transcriptions`; **stream** = `/v1/asr/stream`, the sentences as 4 multi-turn streams of 5 "
        "(gaps 0.8–1.6 s; finals of a stream joined and scored against its sentences joined, so a split or "
        f"merged turn costs nothing, a lost word does), each paused sentence alone in a stream ({LEAD_S} s "
        f"before, {TAIL_S} s after). WER = word errors / reference words, text normalised (case, punctuation).",
    )
    table = []
    for r in rows:
        reasons = ", ".join(f"{k} × {v}" for k, v in sorted(r["reasons"].items()))
        split = "" if r["split"] is None else f"{r['split']} of {r['utterances']}"
        table.append(
            [
                r["set"],
                r["engine"],
                r["utterances"],
                r["words"],
                f"{r['raw']:.1%}",
                f"{r['rest']:.1%}",
                f"{r['stream']:.1%}",
                f"{(r['stream'] - r['raw']) * 100:+.1f}",
                r["finals"],
                split,
                reasons,
            ]
        )
    report.table(
        [
            "set",
            "voice",
            "utterances",
            "words",
            "raw WER",
            "REST WER",
            "stream WER",
            "stream − raw (points)",
            "finals",
            "paused sentences split",
            "end-of-turn reasons",
        ],
        table,
    )
    if any(r["errors"] for r in rows):
        report.text(f"Stream error events: {sum(r['errors'] for r in rows)}.")


if __name__ == "__main__":
    r = Report("ASR WER benchmark")
    run(r)
    print(r.write("ASR_WER.md"))
