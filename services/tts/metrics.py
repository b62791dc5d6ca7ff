"""voice_tts_* metrics (no per-session labels)."""

from __future__ import annotations

from services.common.metrics import RATIO_BUCKETS, counter, gauge, histogram

TIME_TO_FIRST_AUDIO = histogram(
    "tts", "time_to_first_audio_seconds", "from a speakable piece being ready to its first audio chunk"
)
REAL_TIME_FACTOR = histogram(
    "tts", "real_time_factor", "synthesis wall time / audio duration, per request", buckets=RATIO_BUCKETS
)
AUDIO_SECONDS = counter("tts", "audio_seconds_total", "seconds of audio synthesized")
REQUESTS = counter("tts", "requests_total", "synthesis requests by outcome", labels=("outcome",))
QUEUE_DEPTH = gauge("tts", "queue_depth", "text pieces waiting for a synthesis slot")
ACTIVE_SYNTHESES = gauge("tts", "active_syntheses", "syntheses running now")
ACTIVE_STREAMS = gauge("tts", "active_streams", "open /v1/tts/stream WebSocket sessions")
WYOMING_CONNECTIONS = gauge("tts", "wyoming_connections", "open Wyoming TCP connections (TTS_WYOMING_PORT)")
SESSIONS_REJECTED = counter("tts", "sessions_rejected_total", "WebSocket sessions refused at capacity")
VOICE_CACHE_HITS = counter("tts", "voice_cache_hits_total", "registered voices found in the in-process cache")
VOICE_CACHE_MISSES = counter("tts", "voice_cache_misses_total", "registered voices loaded from the store")
ERRORS = counter("tts", "errors_total", "error events and 4xx/5xx answers by code", labels=("code",))


def record_cache(hit: bool) -> None:
    (VOICE_CACHE_HITS if hit else VOICE_CACHE_MISSES).inc()
