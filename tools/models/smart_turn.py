"""Smart Turn v3.2 ONNX (BSD-2) from the pinned pipecat-ai wheel (no pipecat install)."""

from __future__ import annotations

from pathlib import Path

from tools.models.wheel import Member, ensure_members

REQUIREMENT = "pipecat-ai==1.14.0"
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"
FILENAME = "smart-turn-v3.2-cpu.onnx"
MEMBERS = (
    Member(
        "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
        FILENAME,
        "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
    ),
)


def ensure(models_dir: Path) -> Path:
    ensure_members(REQUIREMENT, WHEEL_SHA256, MEMBERS, models_dir)
    return models_dir / FILENAME
