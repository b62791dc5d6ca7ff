"""TTS benchmark: time to first audio and real-time factor per engine, alone and with N
concurrent streams, measured by a WebSocket client against the real service
(`python -m services.tts` on a loopback port).

Engines: espeak-ng, Piper (the real en_US-joe-medium voice, 1 onnxruntime thread per synthesis,
TTS_MAX_CONCURRENT=2 = one per core here), and Chatterbox with the generated random-weight checkpoint (the real
chatterbox-tts 0.1.7 architecture and size — T3 Llama-520M, S3Gen, VoiceEncoder — with random
weights) on CPU. Random weights never emit the stop token, so every request runs to the token cap
set below; the token and flow-step settings are printed in the report.
"""

from __future__ import annotations

import asyncio
import json
import time

import websockets

from bench.report import Report, median
from tests.helpers.procs import ServiceProcess

LEVELS = (1, 2, 4)
TEXT = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."
CHATTERBOX_ENV = {
    "TTS_ENGINE": "chatterbox",
    "TTS_DEVICE": "cpu",
    "TTS_MAX_NEW_TOKENS": "50",  # 2 s of audio per piece at most (25 tokens/s)
    "TTS_FIRST_CHUNK_TOKENS": "15",
    "TTS_CHUNK_TOKENS": "25",
    "TTS_CFM_STEPS": "2",  # package default is 10; 2 keeps a CPU run within minutes
    "TTS_MAX_CONCURRENT": "4",
}
ESPEAK_ENV = {"TTS_ENGINE": "espeak", "TTS_MAX_CONCURRENT": "4"}
PIPER_ENV = {"TTS_ENGINE": "piper", "TTS_MAX_CONCURRENT": "2", "TTS_PIPER_THREADS": "1"}
GPU_NOTE = (
    "No GPU in this environment: the GPU comparison against the anchor (first chunk 472 ms, RTF 0.499 on an "
    "RTX 4090) could not be run. The CUDA path (TTS_DEVICE=auto → cuda) is written but not exercised here."
)


async def one_request(url: str, text: str) -> dict:
    """Client-side time to first audio and wall time; audio seconds from the chunks received."""
    async with websockets.connect(url + "/v1/tts/stream", max_size=None) as ws:
        ready = json.loads(await ws.recv())
        rate = ready["sample_rate"]
        sent = time.monotonic()
        await ws.send(json.dumps({"type": "synthesize", "text": text, "seed": 1}))
        first = None
        samples = 0
        while True:
            message = await asyncio.wait_for(ws.recv(), 900)
            if isinstance(message, bytes):
                samples += len(message) // 4
                if first is None:
                    first = time.monotonic() - sent
                continue
            event = json.loads(message)
            if event["type"] == "synthesis_complete":
                wall = time.monotonic() - sent
                return {
                    "ttfa": first,
                    "wall": wall,
                    "audio_s": samples / rate,
                    "server_first_ms": event["first_audio_ms"],
                    "chunks": event["chunks_sent"],
                }
            if event["type"] == "error":
                raise RuntimeError(event)


async def level(url: str, n: int, text: str) -> list[dict]:
    return list(await asyncio.gather(*(one_request(url, text) for _ in range(n))))


def measure(name: str, env: dict, text: str, rounds: int) -> list[list[object]]:
    rows = []
    service = ServiceProcess("tts", env=env, label="bench-tts-" + name.split()[0]).start(timeout=600)
    try:
        asyncio.run(one_request(service.ws_url, "Warm up."))  # first-call costs out of the numbers
        for n in LEVELS:
            results = []
            for _ in range(rounds):
                results += asyncio.run(level(service.ws_url, n, text))
            ttfa = [r["ttfa"] for r in results if r["ttfa"] is not None]
            rtf = [r["wall"] / r["audio_s"] for r in results if r["audio_s"] > 0]
            rows.append(
                [
                    name,
                    n,
                    len(results),
                    round(median(ttfa) * 1000, 1),
                    round(max(ttfa) * 1000, 1),
                    round(median(rtf), 3),
                    round(median([r["audio_s"] for r in results]), 2),
                    round(median([r["chunks"] for r in results]), 1),
                ]
            )
            print(f"[bench tts] {name} x{n}: {rows[-1]}", flush=True)
    finally:
        service.stop()
    return rows


def run(report: Report) -> None:
    report.section(
        "TTS",
        "Client-side numbers over `/v1/tts/stream` against the real service on loopback. Time to first audio = "
        "`synthesize` sent → first binary audio frame received. RTF = wall time to `synthesis_complete` / seconds "
        "of audio received (< 1 is faster than real time). N concurrent streams each send the same request at once.",
    )
    rows = measure("espeak", ESPEAK_ENV, TEXT, rounds=3)
    rows += measure("piper (joe, CPU)", PIPER_ENV, TEXT, rounds=3)
    cb_settings = ", ".join(f"{k}={v}" for k, v in CHATTERBOX_ENV.items() if k != "TTS_ENGINE")
    rows += measure("chatterbox (tiny-random, CPU)", CHATTERBOX_ENV, "Hello there, how are you today?", rounds=1)
    report.table(["engine", "streams", "requests", "TTFA p50 ms", "TTFA max ms", "RTF p50", "audio s", "chunks"], rows)
    report.text(
        "Chatterbox here is the generated checkpoint: the real chatterbox-tts 0.1.7 architecture and size "
        f"(T3 Llama-520M with CFG, S3Gen, VoiceEncoder) with random weights, on CPU; settings: {cb_settings}. "
        "Random weights never stop on their own, so each request runs to the token cap; compute per token is "
        "that of the real model, the audio is noise. espeak-ng runs as a subprocess per text piece. Piper speaks "
        "each sentence phrase by phrase (TTS_PIPER_PHRASE_CHARS=80), one onnxruntime thread per synthesis, at most "
        "TTS_MAX_CONCURRENT=2 at once: at 4 streams two wait for a slot."
    )
    report.text(GPU_NOTE)

    def draw(ax):
        for engine in sorted({r[0] for r in rows}):
            xs = [r[1] for r in rows if r[0] == engine]
            ax.plot(xs, [r[3] for r in rows if r[0] == engine], marker="o", label=engine)
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("time to first audio, p50 (ms)")
        ax.set_yscale("log")
        ax.legend()

    report.plot("tts_ttfa", draw)


if __name__ == "__main__":
    r = Report("TTS benchmark")
    run(r)
    print(r.write("TTS.md"))
