"""Piper (piper-tts, onnxruntime, CPU): real voices, no weights to generate, no torch.

Voices are files: every `<name>.onnx` with its `<name>.onnx.json` in the voices directory is one
built-in voice, id `<name>`. The default voice is loaded at start; the others on first use (a
voice is ~60 MB of weights and a second to load). Piper cannot clone, so this engine refuses
voice registration (`registers_voices = False`) instead of storing a clip it would ignore.

Streaming: Piper returns a whole input's audio at once, so each speakable piece (a sentence) is
cut into phrases at clause breaks (`split_phrases`, the shared splitter) and spoken phrase by
phrase: the first audio comes after the first phrase, and a cancel lands within one phrase.

Threads: one onnxruntime session per voice with TTS_PIPER_THREADS intra-op threads (1 by
default: on a 2-core machine one thread per synthesis is faster than two fighting each other,
and TTS_MAX_CONCURRENT syntheses then use one core each). `InferenceSession.run` is safe to call
from several threads; piper-tts serialises its espeak-ng phonemizer with its own lock.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common import logs
from services.common.audio import resample
from services.common.text import split_phrases
from services.tts.config import PiperSettings

from .base import BuiltinVoice, CancelToken, Engine, EngineError, SynthesisParams

log = logging.getLogger("voice.tts.piper")


@dataclass(frozen=True)
class VoiceFile:
    id: str
    model: Path
    config: Path
    sample_rate: int
    language: str
    quality: str

    @property
    def label(self) -> str:
        return f"Piper {self.id} ({self.language}, {self.quality}, {self.sample_rate} Hz)"


def find_voices(directory: Path) -> dict[str, VoiceFile]:
    """Every `<name>.onnx` + `<name>.onnx.json` pair in `directory`, by name. A config that does not
    parse or names no sample rate is skipped with a warning (it would fail at load anyway)."""
    voices: dict[str, VoiceFile] = {}
    if not directory.is_dir():
        return voices
    for model in sorted(directory.glob("*.onnx")):
        config = model.with_name(model.name + ".json")
        if not config.is_file():
            continue
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            rate = int(data["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError):
            logs.event(log, "skipping Piper voice with an unreadable config", level=logging.WARNING, voice=model.stem)
            continue
        language = str((data.get("language") or {}).get("code") or (data.get("espeak") or {}).get("voice") or "?")
        quality = str((data.get("audio") or {}).get("quality") or "?")
        voices[model.stem] = VoiceFile(model.stem, model, config, rate, language, quality)
    return voices


def load_voice(voice: VoiceFile, threads: int):
    """A PiperVoice on our own onnxruntime session: `PiperVoice.load` takes no session options,
    and its default lets onnxruntime spread every synthesis over all cores."""
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(voice.model), sess_options=options, providers=["CPUExecutionProvider"])
    config = PiperConfig.from_dict(json.loads(voice.config.read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=config)


class PiperEngine(Engine):
    name = "piper"
    clones_voices = False
    registers_voices = False

    def __init__(self, settings: PiperSettings) -> None:
        try:
            import piper  # noqa: F401
        except ImportError:
            raise EngineError("engine_unavailable", "piper-tts is not installed (pip install .[tts])") from None
        self.settings = settings
        # piper-tts logs the text it speaks at DEBUG ("text=…"): user text stays out of our logs,
        # even with LOG_LEVEL=DEBUG
        logging.getLogger("piper").setLevel(logging.INFO)
        self._files = find_voices(Path(settings.voices_dir))
        if not self._files:
            raise EngineError(
                "engine_unavailable", f"no Piper voices (<name>.onnx + .onnx.json) in {settings.voices_dir}"
            )
        if settings.default_voice not in self._files:
            raise EngineError(
                "bad_voice",
                f"TTS_PIPER_VOICE {settings.default_voice!r} is not in {settings.voices_dir} "
                f"(found: {', '.join(self._files)})",
            )
        self._default = settings.default_voice
        self.sample_rate = self._files[self._default].sample_rate
        self.fingerprint = "piper"
        self.model = self._default
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()
        self._voice(self._default)  # the default voice is ready before /ready says so

    def _voice(self, voice_id: str):
        voice = self._loaded.get(voice_id)
        if voice is not None:
            return voice
        with self._lock:  # one load per voice, however many requests want it at once
            if voice_id not in self._loaded:
                self._loaded[voice_id] = load_voice(self._files[voice_id], self.settings.threads)
            return self._loaded[voice_id]

    def builtin_voices(self) -> list[BuiltinVoice]:
        ordered = [self._default] + [v for v in self._files if v != self._default]
        return [BuiltinVoice(v, self._files[v].label) for v in ordered]

    def builtin_conditionals(self, voice_id: str) -> object:
        if voice_id not in self._files:
            raise KeyError(voice_id)
        return voice_id

    def compute_conditionals(self, reference: np.ndarray, sample_rate: int) -> object:
        raise EngineError("cloning_unsupported", "the piper engine cannot clone voices")

    def serialize(self, conditionals: object) -> bytes:
        return str(conditionals).encode()

    def deserialize(self, blob: bytes) -> object:
        voice = blob.decode()
        return voice if voice in self._files else self._default

    def stream(
        self, text: str, conditionals: object, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[np.ndarray]:
        from piper.config import SynthesisConfig

        voice_id = str(conditionals or self._default)
        if voice_id not in self._files:
            raise EngineError("unknown_voice", "no such Piper voice")
        voice = self._voice(voice_id)
        rate = self._files[voice_id].sample_rate
        # no per-phrase normalisation: phrases of one sentence keep one loudness
        syn = SynthesisConfig(length_scale=float(voice.config.length_scale) / params.speed, normalize_audio=False)
        for phrase in split_phrases(text, self.settings.phrase_chars):
            if cancel.cancelled:
                return
            for chunk in voice.synthesize(phrase, syn):
                if cancel.cancelled:
                    return
                audio = np.asarray(chunk.audio_float_array, dtype=np.float32)
                if rate != self.sample_rate:
                    audio = resample(audio, rate, self.sample_rate)
                if len(audio):
                    yield audio
