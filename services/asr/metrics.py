"""The ASR service's Prometheus metrics (voice_asr_*, base units, no per-session labels)."""

from __future__ import annotations

from services.common.metrics import LATENCY_BUCKETS, counter, gauge, histogram

SERVICE = "asr"
FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

final_latency = histogram(
    SERVICE, "final_latency_seconds", "end of turn decided (sample clock reached it) → final sent", LATENCY_BUCKETS
)
turn_detector = histogram(SERVICE, "turn_detector_seconds", "Smart Turn decision incl. features", FAST_BUCKETS)
vad_frame = histogram(SERVICE, "vad_frame_seconds", "Silero VAD time per 32 ms frame", FAST_BUCKETS)
transcribe = histogram(SERVICE, "transcribe_seconds", "faster-whisper call time", LATENCY_BUCKETS, labels=("kind",))
queue_wait = histogram(SERVICE, "queue_wait_seconds", "time a transcription waited for a worker", LATENCY_BUCKETS)
batch_size = histogram(SERVICE, "batch_size", "requests per batched model call", (2, 3, 4, 6, 8, 12, 16, 24, 32))
active_sessions = gauge(SERVICE, "active_sessions", "open WebSocket sessions and running REST requests")
rejected_sessions = counter(SERVICE, "rejected_sessions_total", "sessions refused at capacity")
audio_seconds = counter(SERVICE, "audio_seconds_total", "audio received, in seconds", labels=("source",))
finals = counter(SERVICE, "finals_total", "finals sent", labels=("reason",))
backlog_finals = counter(
    SERVICE, "backlog_finals_total", "finals decoded in the shorter backlog window (other sessions' finals waited)"
)
context_decodes = counter(
    SERVICE,
    "context_decodes_total",
    "final transcriptions decoded after the stream's previous turn (context.py): kept, or redone alone",
    labels=("outcome",),
)
partials_dropped = counter(SERVICE, "partials_dropped_total", "partials skipped because the engine was busy")
errors = counter(SERVICE, "errors_total", "error events and error responses", labels=("code",))
speculative = counter(
    SERVICE,
    "speculative_finals_total",
    "final transcriptions started before the turn ended: started, used as the final, dropped (speech resumed), "
    "redone (a word's quiet tail came after what it heard)",
    labels=("outcome",),
)
speculative_turns = counter(
    SERVICE,
    "speculative_turn_checks_total",
    "Smart Turn answers for the first check computed before it (endpointing.py): started, used as the "
    "check's answer, dropped (speech resumed), redone (a sound came after what it heard, or the check "
    "came at another length)",
    labels=("outcome",),
)
