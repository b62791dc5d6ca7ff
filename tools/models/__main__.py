from __future__ import annotations

import importlib
import sys

from services.common.config import MODELS_DIR

STEPS = ("smart_turn", "whisper_tiny", "chatterbox_tiny", "chatterbox_turbo_tiny", "chatterbox_mtl_tiny")


def main(argv: list[str]) -> None:
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    wanted = argv or list(STEPS)
    for step in wanted:
        module = importlib.import_module(f"tools.models.{step}")
        path = module.ensure(MODELS_DIR)
        print(f"[models] {step}: {path}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
