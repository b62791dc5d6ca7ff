"""ASR settings, read once from the environment at start (see docs/asr.md for the table)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.common.config import MODELS_DIR, REPO_ROOT, CommonConfig, EnvReader, repo_relative
from services.common.protocol.asr import TURN_MODES, StreamConfig, TurnDetection

DEFAULT_PORT = 8001
LOCAL_MODEL = MODELS_DIR / "whisper-tiny.en"  # real weights, fetched by `make models` (MIT)
RANDOM_TEST_MODEL = MODELS_DIR / "whisper-tiny-random"  # only for tests that need a misbehaving model
HUB_DEFAULT_MODEL = "tiny.en"  # the same weights from the hub (Systran/faster-whisper-tiny.en)
DEVICES = ("auto", "cpu", "cuda")
COMPUTE_TYPES = ("auto", "default", "int8", "int8_float16", "int8_float32", "int16", "float16", "bfloat16", "float32")


shown = repo_relative


def resolved(value: str) -> str:
    """Relative paths are taken from the repository root (where `make run` starts), so the service
    finds models/ whatever its working directory; model names (e.g. "small") pass through."""
    path = Path(value)
    if not path.is_absolute() and (REPO_ROOT / path).exists():
        return str(REPO_ROOT / path)
    return value


def default_model() -> str:
    """SPEC: Whisper tiny.en is the default, from models/ when `make models` put it there (offline),
    else by name, which faster-whisper fetches from the hub on first use."""
    return shown(LOCAL_MODEL) if LOCAL_MODEL.is_dir() else HUB_DEFAULT_MODEL


@dataclass(frozen=True)
class ASRConfig:
    common: CommonConfig
    model: str
    device: str
    compute_type: str
    cpu_threads: int
    workers: int
    batch_size: int
    beam_size: int
    temperatures: tuple[float, ...]
    tokens_per_second: float
    max_upload_bytes: int
    max_audio_s: float
    smart_turn_model: str
    turn_threads: int
    vad_threshold: float
    pre_speech_pad_s: float
    partial_interval_s: float
    max_turn_s: float
    max_pending_partials: int
    stream_defaults: StreamConfig
    # latency and end-of-turn settings (docs/asr.md, "Turn taking and latency")
    partial_window_pad_s: float = 1.0
    final_window_pad_s: float = 16.0
    backlog_final_window_pad_s: float = 4.0
    min_window_s: float = 3.0
    partial_max_wait_s: float = 0.5
    speculate_silence_s: float = 0.064
    turn_recheck_secs: tuple[float, ...] = (0.5, 1.0)
    turn_threshold_decay: float = 0.5
    continuation_wait_s: float = 2.0
    text_complete_s: float = 1.5
    question_complete_s: float = 0.2
    context_gap_s: float = 1.0
    # Wyoming (Home Assistant) TCP server inside the ASR process; Wyoming has no auth (docs/asr.md)
    wyoming_port: int = 0
    wyoming_host: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: EnvReader) -> ASRConfig:
        common = CommonConfig.read(env, "ASR_PORT", DEFAULT_PORT)
        temperatures = env.floats(
            "ASR_TEMPERATURES",
            (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
            "Whisper temperature fallback schedule (comma list; faster-whisper's own default); tests and the "
            "benchmark use 0.0",
        )
        if not temperatures or any(not 0.0 <= t <= 1.0 for t in temperatures):
            env.fail("ASR_TEMPERATURES", "needs one or more temperatures from 0 to 1")
            temperatures = (0.0,)
        mode = env.str("ASR_TURN_MODE", "smart_turn", "default turn_detection.mode", choices=TURN_MODES)
        stop_secs = env.float("ASR_STOP_SECS", 0.2, "default silence before Smart Turn runs", min=0.0, max=10.0)
        max_silence = env.float("ASR_MAX_SILENCE_SECS", 3.0, "default silence that ends a turn anyway", min=0.1)
        if max_silence < stop_secs:
            env.fail("ASR_MAX_SILENCE_SECS", "must be >= ASR_STOP_SECS")
            max_silence = max(stop_secs, 3.0)
        threshold = env.float(
            "ASR_TURN_THRESHOLD", 0.5, "default Smart Turn probability that counts as turn complete", min=0.0, max=1.0
        )
        smart_turn = resolved(
            env.str("ASR_SMART_TURN_MODEL", shown(MODELS_DIR / "smart-turn-v3.2-cpu.onnx"), "Smart Turn v3 ONNX file")
        )
        return cls(
            common=common,
            model=resolved(
                env.str(
                    "ASR_MODEL",
                    default_model(),
                    "faster-whisper model name (tiny … large-v3, distil-…) or a CTranslate2 model directory",
                )
            ),
            device=env.str("ASR_DEVICE", "auto", "auto (CUDA when present), cpu or cuda", choices=DEVICES),
            compute_type=env.str(
                "ASR_COMPUTE_TYPE",
                "auto",
                "CTranslate2 compute type; auto = float16 on CUDA, int8 on CPU",
                choices=COMPUTE_TYPES,
            ),
            cpu_threads=env.int(
                "ASR_CPU_THREADS",
                0,
                "CTranslate2 threads per worker (0 = auto: on CPU the cores shared by the workers, 1 to 4 each; "
                "on CUDA min(4, cores))",
                min=0,
            ),
            workers=env.int(
                "ASR_WORKERS",
                1,
                "transcriptions run in parallel (CTranslate2 num_workers; 2 on a 2-core CPU: a final can start while "
                "another call runs, finals sooner from 8 streams up)",
                min=1,
                max=16,
            ),
            batch_size=env.int(
                "ASR_BATCH_SIZE",
                0,
                "stream requests waiting together decoded in one batch (1 = off; 0 = auto: 8 on CUDA, 1 on CPU, "
                "where batching measured slower)",
                min=0,
                max=64,
            ),
            beam_size=env.int("ASR_BEAM_SIZE", 1, "beam size (1 = greedy, fastest)", min=1, max=10),
            temperatures=temperatures,
            tokens_per_second=env.float(
                "ASR_TOKENS_PER_SECOND", 8.0, "decode cap: new tokens allowed per second of audio (+16)", min=1.0
            ),
            max_upload_bytes=env.int("ASR_MAX_UPLOAD_BYTES", 25 * 1024 * 1024, "largest REST upload", min=1024),
            max_audio_s=env.float(
                "ASR_MAX_AUDIO_SECS", 1800.0, "longest REST upload in decoded seconds (413 past it)", min=1.0
            ),
            smart_turn_model=smart_turn,
            turn_threads=env.int("ASR_TURN_THREADS", 2, "onnxruntime threads for Smart Turn", min=1),
            vad_threshold=env.float("ASR_VAD_THRESHOLD", 0.5, "Silero speech probability", min=0.05, max=0.95),
            pre_speech_pad_s=env.float(
                "ASR_PRE_SPEECH_PAD_SECS",
                0.4,
                "audio kept before speech_start (faster-whisper's own VAD pads 0.4 s: Silero confirms an onset late)",
                min=0.0,
            ),
            partial_interval_s=env.float(
                "ASR_PARTIAL_INTERVAL_SECS", 0.4, "new speech between partials", min=0.1, max=10.0
            ),
            max_turn_s=env.float("ASR_MAX_TURN_SECS", 30.0, "a turn this long is finalized (max_duration)", min=2.0),
            max_pending_partials=env.int(
                "ASR_MAX_PENDING_PARTIALS", 2, "queued partial requests before new ones are dropped", min=0
            ),
            stream_defaults=StreamConfig(
                turn_detection=TurnDetection(
                    mode=mode, stop_secs=stop_secs, max_silence_secs=max_silence, threshold=threshold
                )
            ),
            partial_window_pad_s=env.float(
                "ASR_PARTIAL_WINDOW_PAD_SECS",
                1.0,
                "partials decode in a window of turn + this much padding, not Whisper's 30 s (-1 = 30 s)",
                min=-1.0,
                max=30.0,
            ),
            final_window_pad_s=env.float(
                "ASR_FINAL_WINDOW_PAD_SECS",
                16.0,
                "the same for stream finals (a final failing Whisper's quality checks is redone in 30 s)",
                min=-1.0,
                max=30.0,
            ),
            backlog_final_window_pad_s=env.float(
                "ASR_BACKLOG_FINAL_WINDOW_PAD_SECS",
                4.0,
                "the final window's padding while other sessions' finals wait (the engine is behind: cheaper finals, "
                "fewer words; = ASR_FINAL_WINDOW_PAD_SECS turns it off)",
                min=-1.0,
                max=30.0,
            ),
            min_window_s=env.float(
                "ASR_MIN_WINDOW_SECS",
                3.0,
                "shortest decode window (s): shorter ones make Whisper repeat itself on 1 s turns",
                min=0.0,
                max=30.0,
            ),
            partial_max_wait_s=env.float(
                "ASR_PARTIAL_MAX_WAIT_SECS",
                0.5,
                "a queued partial older than this is dropped while finals or files wait",
                min=0.0,
            ),
            speculate_silence_s=env.float(
                "ASR_SPECULATE_SECS",
                0.064,
                "silence (s) after which an idle engine starts the final's transcription before the turn ends "
                "(0 = only once stop_secs is reached)",
                min=0.0,
                max=10.0,
            ),
            turn_recheck_secs=env.floats(
                "ASR_TURN_RECHECK_SECS",
                (0.5, 1.0),
                "silence (s) at which Smart Turn runs again after stop_secs (comma list, empty = once)",
            ),
            turn_threshold_decay=env.float(
                "ASR_TURN_THRESHOLD_DECAY",
                0.5,
                "the threshold is multiplied by this at each re-check point the silence passes (1 = no decay)",
                min=0.0,
                max=1.0,
            ),
            continuation_wait_s=env.float(
                "ASR_CONTINUATION_WAIT_SECS",
                2.0,
                "a turn whose text ends on a word like 'to', 'the', 'and' ends no sooner than this silence",
                min=0.0,
            ),
            text_complete_s=env.float(
                "ASR_TEXT_COMPLETE_SECS",
                1.5,
                "after this silence a transcript ending a sentence ends the turn though Smart Turn is unsure (0 = off)",
                min=0.0,
            ),
            question_complete_s=env.float(
                "ASR_QUESTION_COMPLETE_SECS",
                0.2,
                "from this silence a transcript ending in '?' ends the turn though Smart Turn is unsure "
                "(at most stop_secs: at the first check; 0 = off)",
                min=0.0,
            ),
            context_gap_s=env.float(
                "ASR_CONTEXT_GAP_SECS",
                1.0,
                "a turn starting within this silence after the previous one is decoded with that turn's audio and "
                "final text before it, as one sentence (0 = off)",
                min=0.0,
                max=10.0,
            ),
            wyoming_port=env.int(
                "ASR_WYOMING_PORT", 0, "Wyoming ASR server port (Home Assistant; 0 = off, e.g. 10300)", min=0, max=65535
            ),
            wyoming_host=env.str(
                "ASR_WYOMING_HOST", "127.0.0.1", "Wyoming bind address: it has no auth, keep it on loopback or a LAN"
            ),
        )

    @property
    def model_name(self) -> str:
        """What clients are told: a directory's name, never the server's file system path."""
        return Path(self.model).name if Path(self.model).is_dir() else self.model


def load(environ=None) -> ASRConfig:
    env = EnvReader(environ=os.environ if environ is None else environ)
    config = ASRConfig.from_env(env)
    if not Path(config.smart_turn_model).is_file():
        env.fail("ASR_SMART_TURN_MODEL", f"no such file {config.smart_turn_model} (run `make models`)")
    env.finish()
    return config
