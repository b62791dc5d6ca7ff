from __future__ import annotations

import shutil

import pytest

from services.common.config import MODELS_DIR


@pytest.fixture(scope="session")
def models_dir():
    if not (MODELS_DIR / "smart-turn-v3.2-cpu.onnx").exists():
        pytest.fail("models/ is empty: run `make models` (make test does it)")
    return MODELS_DIR


@pytest.fixture(scope="session")
def espeak():
    assert shutil.which("espeak-ng"), "espeak-ng missing: `make install` installs it"
