"""Orchestrator settings (environment variables, validated at start; see README's table)."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import CommonConfig, EnvReader

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your answers are spoken aloud, so keep them short and "
    "conversational: one to three sentences, no lists, no markdown, no emoji."
)


@dataclass(frozen=True)
class OrchestratorConfig:
    common: CommonConfig
    asr_url: str
    tts_url: str
    upstream_api_key: str | None
    anthropic_api_key: str | None
    anthropic_base_url: str | None
    llm_model: str
    llm_max_tokens: int
    llm_max_retries: int
    llm_timeout_s: float
    system_prompt: str
    history_turns: int
    ack_enabled: bool
    ack_text: str
    default_voice: str | None
    output_sample_rate: int
    apology_text: str
    upstream_retry_max_s: float
    web_dir: str

    @classmethod
    def from_env(cls, env: EnvReader) -> OrchestratorConfig:
        common = CommonConfig.read(env, "ORCHESTRATOR_PORT", 8000)
        return cls(
            common=common,
            asr_url=env.str("ASR_URL", "ws://127.0.0.1:8001", "ASR service base URL (ws:// or http://)"),
            tts_url=env.str("TTS_URL", "ws://127.0.0.1:8002", "TTS service base URL (ws:// or http://)"),
            upstream_api_key=env.str("UPSTREAM_API_KEY", None, "API key the orchestrator sends to ASR and TTS"),
            anthropic_api_key=env.str("ANTHROPIC_API_KEY", None, "Claude API key; empty = offline demo responder"),
            anthropic_base_url=env.str("ANTHROPIC_BASE_URL", None, "Claude API base URL (proxy, gateway, test server)"),
            llm_model=env.str("LLM_MODEL", "claude-sonnet-4-5", "Claude model name"),
            llm_max_tokens=env.int("LLM_MAX_TOKENS", 300, "max tokens per answer", min=1, max=64000),
            llm_max_retries=env.int("LLM_MAX_RETRIES", 1, "SDK retries on 429/5xx before apologising", min=0, max=10),
            llm_timeout_s=env.float("LLM_TIMEOUT_S", 30.0, "Claude request timeout", min=1.0),
            system_prompt=env.str("SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT, "system prompt for Claude"),
            history_turns=env.int("HISTORY_TURNS", 20, "user+assistant turns kept per session", min=1),
            ack_enabled=env.bool("ACK_ENABLED", False, "speak a fast acknowledgment while Claude thinks"),
            ack_text=env.str("ACK_TEXT", "Mm-hmm.", "the acknowledgment text (llm_chunk flagged needs_followup)"),
            default_voice=env.str("DEFAULT_VOICE", None, "TTS voice id when the session config names none"),
            output_sample_rate=env.int(
                "OUTPUT_SAMPLE_RATE", 24000, "default tts_audio sample rate for clients", min=8000, max=48000
            ),
            apology_text=env.str(
                "APOLOGY_TEXT",
                "Sorry, I'm having trouble answering right now. Please try again in a moment.",
                "spoken when Claude fails (overloaded, rate limited, stream error)",
            ),
            upstream_retry_max_s=env.float(
                "UPSTREAM_RETRY_MAX_S", 5.0, "longest wait between reconnects to ASR/TTS", min=0.1
            ),
            web_dir=env.str("WEB_DIR", "clients/web", "browser client directory served at /"),
        )


def load(environ=None) -> OrchestratorConfig:
    env = EnvReader(environ) if environ is not None else EnvReader()
    config = OrchestratorConfig.from_env(env)
    env.finish()
    return config
