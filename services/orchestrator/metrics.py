"""voice_orchestrator_* metrics, all of them, in one place (no per-session labels).

The convention of every service (docs/architecture.md): one `metrics.py` declares each metric
once through services.common.metrics; the modules that count `from . import metrics` (or
`from .. import metrics`) and use `metrics.NAME`.
"""

from __future__ import annotations

from services.common.metrics import counter, gauge, histogram

# sessions (runtime.py)
ACTIVE_SESSIONS = gauge("orchestrator", "active_sessions", "open agent sessions (all transports)")
REJECTED_SESSIONS = counter("orchestrator", "rejected_sessions_total", "sessions refused at capacity")
# turns (session.py)
TURNS = counter("orchestrator", "turns_total", "agent turns answered", labels=("mode",))
INTERRUPTIONS = counter("orchestrator", "interruptions_total", "barge-ins that cut the agent off")
LLM_ERRORS = counter("orchestrator", "llm_errors_total", "Claude failures answered with an apology", labels=("code",))
# latency waterfall (waterfall.py)
STAGE_SECONDS = histogram(
    "orchestrator",
    "stage_seconds",
    "time from the end of user speech to each waterfall stage",
    labels=("stage",),
)
FIRST_AUDIO_SECONDS = histogram(
    "orchestrator", "first_audio_seconds", "end of user speech to first agent audio sent (voice-to-voice latency)"
)
# upstreams (upstream.py)
UPSTREAM_FAILURES = counter(
    "orchestrator", "upstream_failures_total", "ASR/TTS connections that failed or dropped", labels=("service",)
)
# the Twilio bridge (twilio/media.py)
TWILIO_CALLS = counter("orchestrator", "twilio_calls_total", "Twilio media streams accepted")
TWILIO_REFUSED = counter("orchestrator", "twilio_refused_total", "Twilio requests refused", labels=("reason",))
TWILIO_BAD_MESSAGES = counter("orchestrator", "twilio_bad_messages_total", "malformed Twilio messages skipped")
