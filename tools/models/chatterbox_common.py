"""Shared pieces of the random-weight Chatterbox checkpoint generators (Turbo, Multilingual).

The original checkpoint (chatterbox_tiny) predates this module and keeps its own copy of the
staging logic; the variants share this one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def half_state(module) -> dict:
    """The module's state dict with float parameters stored as float16 (half the disk, and half the
    bytes to read at load time). The package's `load_state_dict` copies each tensor into the
    module's own float32 parameter, so the loaded model is float32 like the real one; buffers keep
    their dtype. Tensors are cloned apart: safetensors refuses shared storage (weight norm)."""
    import torch

    params = {name for name, _ in module.named_parameters()}
    state = {}
    for name, value in module.state_dict().items():
        value = value.detach()
        if name in params and value.is_floating_point():
            value = value.to(torch.float16)
        state[name] = value.clone().contiguous()
    return state


def save_safetensors(module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file(half_state(module), str(path))


def save_torch(module, path: Path) -> None:
    import torch

    torch.save(half_state(module), str(path))


def reference_clip(path: Path, seconds: float = 6.0, rate: int = 24000) -> None:
    """A voiced-sounding synthetic clip (harmonics with a slow pitch glide and syllable envelope)."""
    import numpy as np

    from services.common.audio import wav_bytes

    t = np.arange(int(seconds * rate)) / rate
    f0 = 120.0 + 20.0 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    audio = (0.2 * wave * envelope / np.max(np.abs(wave))).astype(np.float32)
    path.write_bytes(wav_bytes(audio, rate))


def builtin_conditionals(model, out_dir: Path) -> None:
    """conds.pt computed the package's way (`prepare_conditionals` of the variant's own class) from
    a synthetic reference clip, so no download or espeak run is needed."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "ref.wav"
        reference_clip(clip)
        with torch.inference_mode():
            model.prepare_conditionals(str(clip), exaggeration=0.5)
    model.conds.save(out_dir / "conds.pt")


def ensure_dir(models_dir: Path, dirname: str, files: tuple[str, ...], build: Callable[[Path], None]) -> Path:
    """Idempotent: builds models/<dirname>/ once, in a staging directory renamed into place when
    complete, so a half-written checkpoint (killed run) is rebuilt instead of loaded."""
    target = Path(models_dir) / dirname
    if all((target / name).exists() for name in files):
        return target
    staging = Path(models_dir) / (dirname + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    build(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
