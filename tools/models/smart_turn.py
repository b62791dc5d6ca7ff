"""Fetch the Smart Turn v3.2 ONNX from the pinned pipecat-ai wheel (no pipecat install)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PIPECAT_VERSION = "1.14.0"
MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
FILENAME = "smart-turn-v3.2-cpu.onnx"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure(models_dir: Path) -> Path:
    target = models_dir / FILENAME
    if target.exists() and _sha256(target) == SHA256:
        return target
    print(f"[models] Smart Turn v3.2 from pipecat-ai=={PIPECAT_VERSION}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, f"pipecat-ai=={PIPECAT_VERSION}"],
            check=True,
        )
        wheel = next(Path(tmp).glob("pipecat_ai-*.whl"))
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(target.with_suffix(".tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    tmp_target = target.with_suffix(".tmp")
    if _sha256(tmp_target) != SHA256:
        tmp_target.unlink()
        raise SystemExit(f"Smart Turn ONNX from pipecat-ai=={PIPECAT_VERSION} does not match its pinned sha256")
    tmp_target.rename(target)
    return target
