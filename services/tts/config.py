"""TTS settings, read once at start from the environment (see docs/tts.md for the table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.config import MODELS_DIR, CommonConfig, EnvReader, from_repo, repo_relative

ENGINES = ("auto", "chatterbox", "piper", "espeak")
VARIANTS = ("original", "turbo", "multilingual")
# what `make models` generates for each variant (random weights, real formats)
TINY_MODEL_DIRS = {
    "original": MODELS_DIR / "chatterbox-tiny-random",
    "turbo": MODELS_DIR / "chatterbox-turbo-tiny-random",
    "multilingual": MODELS_DIR / "chatterbox-mtl-tiny-random",
}


@dataclass(frozen=True)
class ChatterboxSettings:
    """What the Chatterbox engine needs; kept apart so the engine can be built without the service."""

    model_dir: str  # a local checkpoint directory, or "" = the hub's ResembleAI/chatterbox
    variant: str = "original"
    device: str = "auto"
    first_chunk_tokens: int = 15
    chunk_tokens: int = 50
    context_tokens: int = 12
    crossfade_ms: float = 10.0
    max_new_tokens: int = 1000
    cfm_steps: int = 0  # 0 = the package's default (10; 2 for the meanflow Turbo decoder)
    repetition_penalty: float = 1.2
    min_p: float = 0.05
    top_p: float = 1.0
    language: str = "en"
    torch_threads: int = 0


@dataclass(frozen=True)
class PiperSettings:
    """What the Piper engine needs: where its voices are and how it runs."""

    voices_dir: Path = MODELS_DIR / "piper"
    default_voice: str = "en_US-joe-medium"
    threads: int = 1
    phrase_chars: int = 80


@dataclass(frozen=True)
class TTSConfig:
    common: CommonConfig
    engine: str
    chatterbox: ChatterboxSettings
    piper: PiperSettings
    espeak_voice: str
    redis_url: str
    voices_dir: Path
    voice_cache_size: int
    voice_min_s: float
    voice_max_s: float
    max_concurrent: int
    max_text_chars: int
    piece_max_chars: int
    max_upload_bytes: int
    wyoming_port: int = 0
    wyoming_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: EnvReader) -> TTSConfig:
        variant = env.str("TTS_MODEL_VARIANT", "original", "Chatterbox variant", choices=VARIANTS)
        model_dir = env.str(
            "TTS_MODEL_DIR",
            "auto",
            "Chatterbox checkpoint directory (from_local); `hub` = the variant's hub checkpoint via from_pretrained; "
            "`auto` = the variant's generated checkpoint in models/ when it exists, else the hub",
        )
        model_dir = resolve_model_dir(model_dir, variant)
        if model_dir and not Path(model_dir).is_dir():
            env.fail("TTS_MODEL_DIR", f"{model_dir} is not a directory")
        chatterbox = ChatterboxSettings(
            model_dir=model_dir or "",
            variant=variant,
            device=env.str("TTS_DEVICE", "auto", "torch device: auto (cuda when available), cpu, cuda, cuda:N"),
            first_chunk_tokens=env.int(
                "TTS_FIRST_CHUNK_TOKENS", 15, "speech tokens (25/s) in the first streamed chunk", min=4, max=200
            ),
            chunk_tokens=env.int("TTS_CHUNK_TOKENS", 50, "speech tokens per later chunk (chunk_size)", min=4, max=500),
            context_tokens=env.int(
                "TTS_CONTEXT_TOKENS", 12, "already-emitted tokens re-decoded as left context per chunk", min=2, max=200
            ),
            crossfade_ms=env.float("TTS_CROSSFADE_MS", 10.0, "cross-fade at chunk joins", min=0.0, max=100.0),
            max_new_tokens=env.int(
                "TTS_MAX_NEW_TOKENS", 1000, "cap on speech tokens per text piece (25 tokens = 1 s)", min=4, max=4000
            ),
            cfm_steps=env.int("TTS_CFM_STEPS", 0, "S3Gen flow-matching steps; 0 = package default", min=0, max=50),
            repetition_penalty=env.float("TTS_REPETITION_PENALTY", 1.2, "T3 repetition penalty", min=1.0, max=5.0),
            min_p=env.float("TTS_MIN_P", 0.05, "T3 min-p sampling", min=0.0, max=1.0),
            top_p=env.float("TTS_TOP_P", 1.0, "T3 top-p sampling", min=0.0, max=1.0),
            language=env.str("TTS_LANGUAGE", "en", "language id for the multilingual variant"),
            torch_threads=env.int("TTS_TORCH_THREADS", 0, "torch intra-op threads; 0 = torch default", min=0),
        )
        if chatterbox.first_chunk_tokens > chatterbox.chunk_tokens:
            env.fail("TTS_FIRST_CHUNK_TOKENS", "must not exceed TTS_CHUNK_TOKENS")
        piper = PiperSettings(
            voices_dir=_repo_path(
                env.str(
                    "TTS_PIPER_VOICES_DIR",
                    repo_relative(MODELS_DIR / "piper"),
                    "Piper voices: every <name>.onnx + <name>.onnx.json",
                )
            ),
            default_voice=env.str(
                "TTS_PIPER_VOICE", "en_US-joe-medium", "default Piper voice (file name without .onnx)"
            ),
            threads=env.int(
                "TTS_PIPER_THREADS",
                1,
                "onnxruntime intra-op threads per Piper synthesis (1 is fastest on 2 cores)",
                min=1,
            ),
            phrase_chars=env.int(
                "TTS_PIPER_PHRASE_CHARS", 80, "longest phrase Piper speaks at once (first audio after it)", min=16
            ),
        )
        return cls(
            common=CommonConfig.read(env, "TTS_PORT", 8002),
            engine=env.str(
                "TTS_ENGINE",
                "auto",
                "synthesis engine; auto = chatterbox where CUDA and real weights are present, else piper",
                choices=ENGINES,
            ),
            chatterbox=chatterbox,
            piper=piper,
            espeak_voice=env.str("TTS_ESPEAK_VOICE", "en-us", "default espeak-ng voice"),
            redis_url=env.str("REDIS_URL", "", "Redis for the shared voice store; empty = local directory"),
            voices_dir=_repo_path(env.str("TTS_VOICES_DIR", "data/tts-voices", "voice directory (no Redis)")),
            voice_cache_size=env.int("TTS_VOICE_CACHE_SIZE", 64, "voices kept in the in-process LRU", min=1),
            voice_min_s=env.float("TTS_VOICE_MIN_S", 2.0, "shortest reference clip, seconds", min=0.1),
            voice_max_s=env.float("TTS_VOICE_MAX_S", 30.0, "longest reference clip, seconds", min=1.0),
            max_concurrent=env.int("TTS_MAX_CONCURRENT", 2, "syntheses running at once (others queue)", min=1),
            max_text_chars=env.int("TTS_MAX_TEXT_CHARS", 4096, "largest text per request", min=16),
            piece_max_chars=env.int("TTS_PIECE_MAX_CHARS", 300, "longest piece sent to the model at once", min=16),
            max_upload_bytes=env.int("TTS_MAX_UPLOAD_BYTES", 10 << 20, "largest reference upload (REST)", min=1024),
            wyoming_port=env.int(
                "TTS_WYOMING_PORT", 0, "Wyoming TTS server port (Home Assistant; 0 = off, e.g. 10200)", min=0, max=65535
            ),
            wyoming_host=env.str(
                "TTS_WYOMING_HOST", "127.0.0.1", "Wyoming bind address: it has no auth, keep it on loopback or a LAN"
            ),
        )


_repo_path = from_repo


def resolve_model_dir(value: str, variant: str = "original") -> str:
    """`auto` → the variant's generated checkpoint when present, else "" (= the hub); `hub` → ""."""
    if value == "auto":
        tiny = TINY_MODEL_DIRS.get(variant, TINY_MODEL_DIRS["original"])
        return str(tiny) if tiny.exists() else ""
    if value in ("hub", ""):
        return ""
    return str(_repo_path(value)) if not Path(value).expanduser().exists() else str(Path(value).expanduser())


def load(environ: Mapping[str, str] | None = None) -> TTSConfig:
    env = EnvReader(os.environ if environ is None else environ)
    config = TTSConfig.from_env(env)
    env.finish()
    return config
