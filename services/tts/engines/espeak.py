"""espeak-ng as a subprocess: the light engine (CPU, no weights), same interface as Chatterbox.

Audio is read from espeak-ng's stdout while it is still speaking and handed on in ~50 ms
chunks, so the first chunk of a long text arrives long before espeak-ng has finished.

Voices are espeak-ng's own voices (`espeak-ng --voices`). espeak-ng cannot clone: a registered
reference clip is stored (so a Chatterbox replica sharing the store can use it) but an espeak
engine speaks it with the default espeak voice. Text goes in on stdin, never on the command line.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator

import numpy as np

from services.common.audio import int16_to_float

from .base import BuiltinVoice, CancelToken, Engine, EngineError, SynthesisParams

ESPEAK_RATE = 22050
WPM = 175  # espeak-ng's default speaking rate (words per minute)
CHUNK_BYTES = 2 * 1102  # ~50 ms of 16-bit mono at 22.05 kHz
DEFAULT_VOICE_LIST = ("en-us", "en-gb", "en", "de", "fr", "es", "it")


def _list_voices(binary: str) -> list[str]:
    try:
        out = subprocess.run([binary, "--voices"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return list(DEFAULT_VOICE_LIST)
    names = [line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1]
    return names or list(DEFAULT_VOICE_LIST)


class EspeakEngine(Engine):
    name = "espeak"
    sample_rate = ESPEAK_RATE
    fingerprint = "espeak-ng"
    clones_voices = False

    def __init__(self, default_voice: str = "en-us") -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise EngineError("engine_unavailable", "espeak-ng is not installed")
        self.binary = binary
        self._voices = _list_voices(binary)
        if default_voice not in self._voices:
            raise EngineError("bad_voice", f"espeak-ng has no voice {default_voice!r}")
        self._default = default_voice

    def builtin_voices(self) -> list[BuiltinVoice]:
        ordered = [self._default] + [v for v in self._voices if v != self._default]
        return [BuiltinVoice(v, f"espeak-ng {v}") for v in ordered]

    def builtin_conditionals(self, voice_id: str) -> object:
        if voice_id not in self._voices:
            raise KeyError(voice_id)
        return voice_id

    def compute_conditionals(self, reference: np.ndarray, sample_rate: int) -> object:
        return self._default  # no cloning: a registered voice speaks with the default espeak voice

    def serialize(self, conditionals: object) -> bytes:
        return str(conditionals).encode()

    def deserialize(self, blob: bytes) -> object:
        voice = blob.decode()
        return voice if voice in self._voices else self._default

    def stream(
        self, text: str, conditionals: object, params: SynthesisParams, cancel: CancelToken
    ) -> Iterator[np.ndarray]:
        voice = str(conditionals or self._default)
        rate = max(80, min(450, round(WPM * params.speed)))
        proc = subprocess.Popen(
            [self.binary, "--stdout", "-v", voice, "-s", str(rate)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdin and proc.stdout
            proc.stdin.write(text.encode("utf-8"))
            proc.stdin.close()
            fd = proc.stdout.fileno()
            header = self._read_exact(fd, 44)
            if len(header) < 44 or header[:4] != b"RIFF":
                raise EngineError("engine_failed", "espeak-ng produced no audio")
            if struct.unpack("<I", header[24:28])[0] != ESPEAK_RATE:
                raise EngineError("engine_failed", "espeak-ng changed its sample rate")
            pending = b""
            while not cancel.cancelled:
                data = os.read(fd, CHUNK_BYTES - len(pending))
                if not data:
                    break
                pending += data
                if len(pending) >= CHUNK_BYTES:
                    yield int16_to_float(np.frombuffer(pending, dtype="<i2"))
                    pending = b""
            if pending and not cancel.cancelled:
                whole = len(pending) - len(pending) % 2
                if whole:
                    yield int16_to_float(np.frombuffer(pending[:whole], dtype="<i2"))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    @staticmethod
    def _read_exact(fd: int, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            data = os.read(fd, n - len(buf))
            if not data:
                break
            buf += data
        return buf
