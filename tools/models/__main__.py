"""`python -m tools.models [--test] [STEP ...]`: fetch what the configuration needs.

Without arguments only what `make run` loads is fetched (no torch needed); a generated random
Chatterbox is added only when `TTS_ENGINE=chatterbox` asks for one with no real checkpoint.
`--test` adds every generated model the suite uses.
"""

from __future__ import annotations

import importlib
import os
import sys

from services.common.config import MODELS_DIR

RUN_STEPS = ("smart_turn", "whisper_tiny_en", "piper_joe")
TEST_STEPS = ("whisper_tiny", "chatterbox_tiny", "chatterbox_turbo_tiny", "chatterbox_mtl_tiny")
VARIANT_STEPS = {"original": "chatterbox_tiny", "turbo": "chatterbox_turbo_tiny", "multilingual": "chatterbox_mtl_tiny"}


def run_steps(environ: dict[str, str]) -> list[str]:
    steps = list(RUN_STEPS)
    wants_generated = environ.get("TTS_MODEL_DIR", "auto").strip() in ("", "auto")
    if environ.get("TTS_ENGINE", "").strip() == "chatterbox" and wants_generated:
        steps.append(VARIANT_STEPS.get(environ.get("TTS_MODEL_VARIANT", "original").strip(), "chatterbox_tiny"))
    return steps


def main(argv: list[str]) -> None:
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    test = "--test" in argv
    named = [a for a in argv if not a.startswith("--")]
    wanted = named or (list(RUN_STEPS) + list(TEST_STEPS) if test else run_steps(dict(os.environ)))
    for step in wanted:
        module = importlib.import_module(f"tools.models.{step}")
        path = module.ensure(MODELS_DIR)
        print(f"[models] {step}: {path}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
