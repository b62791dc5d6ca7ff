"""TTS_ENGINE=auto: which engine this machine should run, decided once at start.

Chatterbox only where it runs in real time: the package installed, real weights resolvable
(a local checkpoint that is not one of the generated random-weight ones, or the variant's
snapshot in the Hugging Face hub cache) and a CUDA device. Otherwise Piper, which speaks real
words on any CPU. The checks go cheapest first, so a machine without chatterbox-tts never
imports torch, and one without weights never initialises CUDA.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .config import ChatterboxSettings, TTSConfig

HUB_REPOS = {
    "original": "ResembleAI/chatterbox",
    "turbo": "ResembleAI/chatterbox-turbo",
    "multilingual": "ResembleAI/chatterbox",
}


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # chatterbox | piper | espeak
    reason: str  # why, for the start log and /ready
    chatterbox: ChatterboxSettings | None = None  # the settings to load it with (model_dir may change)


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloads, by its own environment variables (no import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "huggingface" / "hub"


def hub_snapshot(variant: str, cache: Path | None = None) -> Path | None:
    """A cached snapshot of the variant's hub repo holding both T3 and S3Gen weights, if any."""
    repo = HUB_REPOS.get(variant, HUB_REPOS["original"])
    snapshots = (cache or hub_cache()) / ("models--" + repo.replace("/", "--")) / "snapshots"
    if not snapshots.is_dir():
        return None
    for snap in sorted(snapshots.iterdir()):
        if any(snap.glob("t3*")) and any(snap.glob("s3gen*")):
            return snap
    return None


def is_generated(model_dir: str) -> bool:
    """The random-weight checkpoints `make models` builds say so in their README.json."""
    readme = Path(model_dir) / "README.json"
    try:
        return "random" in str(json.loads(readme.read_text()).get("what", ""))
    except (OSError, ValueError, AttributeError):
        return False


def real_weights(settings: ChatterboxSettings) -> ChatterboxSettings | None:
    """The settings that load real Chatterbox weights, or None when only random ones (or none) exist."""
    if settings.model_dir and not is_generated(settings.model_dir):
        return settings
    if hub_snapshot(settings.variant) is not None:
        return replace(settings, model_dir="")  # "" = from_pretrained, which finds the cached snapshot
    return None


def installed(module: str) -> bool:
    """Importable, without importing it (a blocked or broken entry counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cuda_available() -> bool:
    import torch  # only reached with chatterbox-tts (and so torch) installed

    return bool(torch.cuda.is_available())


def choose(config: TTSConfig) -> EngineChoice:
    if config.engine != "auto":
        settings = config.chatterbox if config.engine == "chatterbox" else None
        return EngineChoice(config.engine, f"TTS_ENGINE={config.engine}", settings)
    if not (installed("chatterbox") and installed("torch")):
        return EngineChoice("piper", "auto: chatterbox-tts is not installed")
    settings = real_weights(config.chatterbox)
    if settings is None:
        return EngineChoice("piper", "auto: no real Chatterbox weights in TTS_MODEL_DIR or the hub cache")
    if config.chatterbox.device == "cpu" or not config.chatterbox.device.startswith(("auto", "cuda")):
        return EngineChoice(
            "piper", f"auto: TTS_DEVICE={config.chatterbox.device} (Chatterbox is real time on CUDA only)"
        )
    if not cuda_available():
        return EngineChoice("piper", "auto: no CUDA device")
    return EngineChoice("chatterbox", "auto: CUDA and real Chatterbox weights", settings)
