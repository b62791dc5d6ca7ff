"""OpenAI transcription response bodies: json, text, verbose_json, srt, vtt."""

from __future__ import annotations

from typing import Any

from .transcript import Transcript

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
GRANULARITIES = ("word", "segment")


def as_json(t: Transcript) -> dict[str, Any]:
    return {"text": t.text, "usage": {"type": "duration", "seconds": round(t.duration, 3)}}


def as_verbose_json(t: Transcript, granularities: tuple[str, ...]) -> dict[str, Any]:
    """OpenAI's verbose_json: segments unless only words were asked for; words only when asked."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": t.language or "",
        "duration": round(t.duration, 3),
        "text": t.text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.seek,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in t.segments
        ]
    if "word" in granularities:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in t.words if w.word.strip()]
    body["usage"] = {"type": "duration", "seconds": round(t.duration, 3)}
    return body


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def as_srt(t: Transcript) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(t.segments, start=1)
    ]
    return "\n".join(blocks)


def as_vtt(t: Transcript) -> str:
    blocks = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in t.segments]
    return "WEBVTT\n\n" + "\n".join(blocks)


def as_text(t: Transcript) -> str:
    return t.text + "\n"
